"""The CLI answers --help fast: heavy libraries load only inside the commands that need them."""

import subprocess
import sys


def test_help_imports_no_torch_or_diffusers():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from semanticdraw_cli.cli.app import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0 and 'render' in result.output\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'psd_tools', 'accelerate') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_command_has_help():
    from typer.testing import CliRunner

    from semanticdraw_cli.cli.app import app

    for command in ("render", "validate", "preview", "import", "inspect", "watch", "score", "check", "compare"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, command


def test_version():
    from typer.testing import CliRunner

    from semanticdraw_cli import __version__
    from semanticdraw_cli.cli.app import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"semanticdraw {__version__}"


def test_help_shows_every_default():
    from typer.testing import CliRunner

    from semanticdraw_cli import defaults
    from semanticdraw_cli.cli.app import app

    def help_of(command: str) -> str:
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0
        return " ".join(result.output.split())  # the same text, however the lines wrap

    render = help_of("render")
    for default in (f"[default: (the scene's, else {defaults.SEED})]", "[default: (auto: cuda, then mps, then cpu)]",
                    "[default: (auto: float16 on cuda (bfloat16 for flux, klein), else float32)]", "[default: .]"):
        assert default in render, default
    assert "[default: (NAME-preview.png)]" in help_of("preview")
    assert "[default: (auto: float16 on cuda (bfloat16 for flux, klein), else float32)]" in help_of("watch")
    assert "STEM-masks/" in help_of("import") and "OUTPUT-masks" not in help_of("import")
