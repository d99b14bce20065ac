"""Problems and the text they print: whatever a scene or file name holds, it cannot restyle a terminal or start a line."""

from semanticdraw_cli.errors import Problem, printable, printable_lines


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
