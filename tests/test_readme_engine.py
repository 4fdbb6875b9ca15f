"""The README's engine example runs as written and learns XOR."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_engine_example_runs(capsys):
    text = README.read_text()
    section = text.split("## Use the engine from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README-engine", "exec"), {})
    out = capsys.readouterr().out
    acc = float(re.search(r"held-out accuracy ([0-9.]+)", out).group(1))
    assert acc >= 0.95, out


def test_readme_preprocessing_example_runs(capsys):
    text = README.read_text()
    section = text.split("## Use the engine from Python", 1)[1].split("<!-- section: api -->", 1)[0]
    code = next(c for c in re.findall(r"```python\n(.*?)```", section, re.S) if "Preprocessor" in c)
    exec(compile(code, "README-preprocessing", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "['age', 'age=<missing>', 'plan=basic', 'plan=pro', 'plan=team']"
    assert lines[1] == "[1 0 1]"


def test_readme_training_options_example_runs(capsys):
    text = README.read_text()
    section = text.split("## Use the engine from Python", 1)[1].split("<!-- section: api -->", 1)[0]
    code = next(c for c in re.findall(r"```python\n(.*?)```", section, re.S) if "lr_schedule" in c)
    exec(compile("\n".join(line[2:] for line in code.splitlines()), "README-options", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[0.0167, 0.0333, 0.05]"
    assert float(lines[1].rsplit(" ", 1)[1]) >= 0.9, lines
