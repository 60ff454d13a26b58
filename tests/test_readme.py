"""The README and the documentation pages stay true: the Quick start, the config examples and the commands shown."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from model.booster import ALIASES, lgbm_params
from training.cli import app
from training.config import (
    TrainConfig,
    check_config,
    config_from_dict,
    tomllib,  # guarded: Python 3.10 has only tomli
)
from training.experiment import build_model

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
DEFAULTS_INTRO = "The defaults:"  # the line before the config reference's block of every default


def _blocks(language: str) -> list[tuple[str, str]]:
    """(page, block) for every fenced block of `language` in the README and the docs pages (fences may be indented,
    as inside a list item)."""
    return [(page.relative_to(ROOT).as_posix(), block)
            for page in PAGES
            for block in re.findall(rf"```{language}\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)]


def test_quick_start_is_exactly_the_two_commands() -> None:
    quick = README.read_text().split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [line for block in re.findall(r"```bash\n(.*?)```", quick, flags=re.S) for line in block.splitlines()]
    assert commands == ['pip install -e . && nmu train', 'pip install -e ".[test]" && pytest']


def test_the_pages_have_blocks_to_check() -> None:
    """The checks below find what they check (a changed fence would otherwise leave them nothing to test)."""
    assert len(_blocks("toml")) >= 3
    assert len(_nmu_commands()) >= 10
    assert any(DEFAULTS_INTRO in page.read_text(encoding="utf-8") for page in PAGES)


def _in_effect(config: TrainConfig, table: str | None, key: str) -> Any:
    """The value `nmu train` uses for a key of the config: what the model is built with for [components], what
    LightGBM is given (under its own name) for [lightgbm], the config's own value elsewhere."""
    if table is None:
        if key == "embargo":
            return config.resolved_embargo
        return getattr(config, key)
    if table == "components":
        return build_model(config, groups={}).get_params(deep=False)[key]
    if table == "lightgbm":
        return lgbm_params(build_model(config, groups={}).lgbm_params)[ALIASES.get(key, key)]
    return getattr(config, table)[key]


def _written(data: dict[str, Any]) -> list[tuple[str | None, str, Any]]:
    """(table or None, key, value) of every setting a TOML block writes."""
    return [(table, key, value) for table, values in data.items() if isinstance(values, dict)
            for key, value in values.items()] + [(None, key, value) for key, value in data.items()
                                                 if not isinstance(value, dict)]


def _ids(blocks: list[tuple[str, str]]) -> list[str]:
    """page:n, the n-th block of that page."""
    return [f"{page}:{sum(p == page for p, _ in blocks[:i]) + 1}" for i, (page, _) in enumerate(blocks)]


@pytest.mark.parametrize("page, block", _blocks("toml"), ids=_ids(_blocks("toml")))
def test_config_examples_are_valid_configs(page: str, block: str) -> None:
    """Each TOML example passes the config checks of `nmu train`, and every value it writes is the value in effect."""
    data = tomllib.loads(block)
    config = config_from_dict(data, source=page)
    check_config(config, source=page)
    for table, key, value in _written(data):
        assert _in_effect(config, table, key) == value, f"{page}: {table or ''}.{key} = {value!r} did not take effect"


def test_the_documented_defaults_are_the_defaults() -> None:
    """The config reference's block of defaults shows what a config without that key gets."""
    blocks = [block for page in PAGES
              for block in re.findall(rf"{DEFAULTS_INTRO}\s*```toml\n(.*?)```", page.read_text(encoding="utf-8"), re.S)]
    assert blocks
    defaults = TrainConfig()
    for block in blocks:
        for table, key, value in _written(tomllib.loads(block)):
            assert _in_effect(defaults, table, key) == value, f"{table or ''}.{key}: the default is not {value!r}"


def test_python_examples_are_the_readme_one() -> None:
    """A Python example of the docs is the README's, which tests/test_sklearn.py runs as written."""
    readme = [block for page, block in _blocks("python") if page == "README.md"]
    for page, block in _blocks("python"):
        assert block in readme, f"{page}: a Python example that no test runs"


def _nmu_commands() -> list[list[str]]:
    """Each `nmu ...` command of a bash block, also after `&&` or `;` (as in the Quick start), once."""
    commands: list[list[str]] = []
    for _, block in _blocks("bash"):
        for line in block.splitlines():
            for part in re.split(r"&&|;", line.split("#", 1)[0]):
                argv = shlex.split(part.strip())[1:] if part.strip().startswith("nmu ") else None
                if argv is not None and argv not in commands:
                    commands.append(argv)
    return commands


@pytest.mark.parametrize("argv", _nmu_commands(), ids=lambda a: " ".join(a))
def test_every_command_shown_parses(argv: list[str]) -> None:
    """Each `nmu ...` line of the README and the docs names a real command and options it accepts (checked with
    --help appended, so nothing runs)."""
    words = [w for w in argv if w != "--help"]
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0, result.output
    options = [w.split("=")[0] for w in words if w.startswith("--")]
    for option in options:
        assert option in result.output, f"{option} not an option of `nmu {' '.join(words)}`"


def test_the_workflow_commits_the_refreshed_pickle_past_the_projects_gitignore(tmp_path):
    """The workflow's last step, run as written (but the push) in a repository with this project's .gitignore, which
    leaves artifacts/ out: the refreshed pickle and its manifest are committed, and a week with nothing new commits
    nothing and still succeeds (GitHub runs the step with bash -e)."""
    text = (ROOT / "examples" / "refresh-weekly.yml").read_text()
    step = text[text.index("- name: keep the refreshed pickle"):]
    script = step[step.index("run: |") + len("run: |"):]
    lines = [ln.strip() for ln in script.splitlines() if ln.strip()]
    script = "\n".join(ln.replace(" && git push", "") for ln in lines)
    assert "git add -f artifacts/model.pkl artifacts/manifest.json" in script

    repo = tmp_path / "repo"
    (repo / "artifacts").mkdir(parents=True)
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    env = {"PATH": f"{Path(git).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, check=False)

    assert run("git", "init", "-q").returncode == 0
    for week, pickle in enumerate((b"the pickle nmu train wrote", b"refreshed", b"refreshed")):
        (repo / "artifacts" / "model.pkl").write_bytes(pickle)
        (repo / "artifacts" / "manifest.json").write_text(f'{{"sha256": "{min(week, 1)}"}}')
        result = run("bash", "-e", "-c", script)
        assert result.returncode == 0, result.stdout + result.stderr
        log = run("git", "log", "--format=%s").stdout.splitlines()
        assert len(log) == (1, 2, 2)[week], log  # the third week brings nothing new: no commit
        assert run("git", "show", "HEAD:artifacts/model.pkl").stdout == pickle.decode()
