"""Problems and the text they print: whatever a scene or file name holds, it cannot restyle a terminal or start a line."""

from semanticdraw_cli.errors import Problem, printable, printable_lines, problem_lines


def test_control_and_invisible_characters_are_shown_escaped():
    assert printable("red\x1b[31m fox\nsecond\tline\r") == "red\\x1b[31m fox\\nsecond\\tline\\r"
    assert printable("a\u202eb\u2028c\x7f\x85") == "a\\u202eb\\u2028c\\x7f\\x85"


def test_ordinary_text_is_unchanged():
    for text in ("café au lait", "日本の狐", "a fox, 50% [bold] {x: 1}", "non\u00a0breaking", ""):
        assert printable(text) == text


def test_several_lines_keep_their_breaks_and_only_them():
    assert printable_lines("key: 1\nname: \x1b]0;title\x07\n") == "key: 1\nname: \\x1b]0;title\\a\n"


def test_a_problem_is_one_line_whatever_its_parts_hold():
    problem = Problem("scene\n.yaml", "regions[0].\x1b[2Jkey", "unknown key 'x\ny'", 3, "did you mean\r'y'?")
    text = str(problem)
    assert "\n" not in text and "\x1b" not in text and "\r" not in text
    assert text == "scene\\n.yaml:3: regions[0].\\x1b[2Jkey: unknown key 'x\\ny' (hint: did you mean\\r'y'?)"


def test_each_file_lists_its_first_problems_and_counts_the_rest():
    problems = [Problem("a.yaml", f"k{i}", "unknown key", i) for i in range(120)] + [Problem("b.yaml", "x", "bad")]
    lines = problem_lines(problems, limit=50)
    assert lines[:50] == [str(p) for p in problems[:50]]
    assert lines[50:] == ["b.yaml: x: bad", "a.yaml: \u2026 and 70 more problems"]


def test_a_scene_error_prints_capped():
    from semanticdraw_cli.defaults import MAX_PROBLEMS_LISTED
    from semanticdraw_cli.errors import SceneError

    text = str(SceneError([Problem("a.yaml", f"k{i}", "unknown key") for i in range(MAX_PROBLEMS_LISTED + 1)]))
    assert len(text.splitlines()) == MAX_PROBLEMS_LISTED + 1 and text.endswith("\u2026 and 1 more problem")
