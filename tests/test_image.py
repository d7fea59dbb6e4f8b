"""The Dockerfile, kept honest without Docker (which cannot run on the build machines).

The image must install nothing except through ``scripts/install-system.sh`` and
``scripts/install-python.sh``, the two scripts ``scripts/setup.sh`` runs on every CI run, so a
green CI run has exercised the image's install steps. These tests read the Dockerfile, follow
its COPY/WORKDIR/RUN instructions statically, and run the scripts' offline ``--check`` modes.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
import typer.main
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
SETUP = ROOT / "scripts" / "setup.sh"
INSTALL_SCRIPTS = ["scripts/install-system.sh", "scripts/install-python.sh"]
PACKAGE_MANAGERS = {"apt-get", "apt", "aptitude", "dpkg", "pip", "pip3", "uv", "conda", "curl", "wget"}
SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}"}
BASH = shutil.which("bash") or "/bin/bash"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON (exec) form's arguments; fails for the shell form."""
        assert self.args.startswith("["), f"Dockerfile:{self.line}: {self.keyword} must use the exec form"
        value = json.loads(self.args)
        assert isinstance(value, list)
        return [str(v) for v in value]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined and comments dropped, as Docker reads them."""
    instructions: list[Instruction] = []
    current, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continued instruction, where Docker drops them too
        if not current:
            start = number
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, args = (current + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        current = ""
    assert not current, "the Dockerfile ends inside a continued instruction"
    return instructions


def shell_commands(text: str) -> list[list[str]]:
    """The simple commands of a shell text (split on newlines, ;, &&, ||, |), keywords dropped."""
    commands: list[list[str]] = []
    joined = text.replace("\\\n", " ")
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= set("();<>|&"):
                while words and (words[0] in SHELL_KEYWORDS or _is_assignment(words[0])):
                    words.pop(0)
                if words:
                    commands.append(words)
                words = []
            else:
                words.append(token)
    return commands


def _is_assignment(word: str) -> bool:
    name, sep, _ = word.partition("=")
    return bool(sep) and name.isidentifier()


def script_calls(text: str, *, as_written: bool = False) -> list[list[str]]:
    """Every command of ``text`` that runs one of the repository's scripts/*.sh, named
    ``scripts/NAME.sh`` (or with the path as written)."""
    return [
        [cmd[0] if as_written else f"scripts/{PurePosixPath(cmd[0]).name}", *cmd[1:]]
        for cmd in shell_commands(text)
        if cmd[0].endswith(".sh") and PurePosixPath(cmd[0]).parent.name == "scripts"
    ]


def package_manager_calls(text: str) -> list[list[str]]:
    return [
        cmd
        for cmd in shell_commands(text)
        if PurePosixPath(cmd[0]).name in PACKAGE_MANAGERS
        or (PurePosixPath(cmd[0]).name.startswith("python") and cmd[1:3] == ["-m", "pip"])
    ]


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _runs(instructions: list[Instruction]) -> list[Instruction]:
    runs = [i for i in instructions if i.keyword == "RUN"]
    assert all(not r.args.startswith("[") for r in runs), "RUN lines are expected in the shell form"
    return runs


def _last(instructions: list[Instruction], keyword: str) -> Instruction:
    matching = [i for i in instructions if i.keyword == keyword]
    assert matching, f"the Dockerfile has no {keyword}"
    return matching[-1]


# --- what the image runs ---------------------------------------------------------------------


def test_the_image_installs_only_through_the_two_install_scripts(instructions: list[Instruction]) -> None:
    runs = _runs(instructions)
    called = [call[0] for run in runs for call in script_calls(run.args)]
    assert called == INSTALL_SCRIPTS
    for run in runs:
        assert not package_manager_calls(run.args), f"Dockerfile:{run.line}: installs outside the scripts"


def test_setup_sh_runs_the_same_install_scripts_in_the_same_order() -> None:
    text = SETUP.read_text()
    assert [call[0] for call in script_calls(text)] == INSTALL_SCRIPTS
    assert not package_manager_calls(text), "setup.sh must install only through the two scripts"


def test_install_system_runs_with_dev_in_setup_and_without_it_in_the_image(
    instructions: list[Instruction],
) -> None:
    (image_call,) = [
        c for r in _runs(instructions) for c in script_calls(r.args) if c[0] == INSTALL_SCRIPTS[0]
    ]
    (setup_call,) = [c for c in script_calls(SETUP.read_text()) if c[0] == INSTALL_SCRIPTS[0]]
    assert "--dev" not in image_call
    assert "--dev" in setup_call


def test_every_file_the_install_needs_is_copied_before_it_is_used(
    instructions: list[Instruction], pyproject: dict[str, object]
) -> None:
    project = pyproject["project"]
    assert isinstance(project, dict)
    find = pyproject["tool"]["setuptools"]["packages"]["find"]  # type: ignore[index]
    packages = sorted(
        {
            d.name
            for pattern in find["include"]
            for d in ROOT.iterdir()
            if d.is_dir() and (d / "__init__.py").exists() and fnmatch.fnmatch(d.name, pattern)
        }
    )
    assert packages, "no package matches tool.setuptools.packages.find.include"
    install_python = (ROOT / INSTALL_SCRIPTS[1]).read_text()
    assert "-c constraints.txt" in install_python
    needs = {
        INSTALL_SCRIPTS[0]: [INSTALL_SCRIPTS[0]],
        INSTALL_SCRIPTS[1]: [
            INSTALL_SCRIPTS[1],
            "pyproject.toml",
            "constraints.txt",
            project["readme"],
            *packages,
        ],
    }

    copies: list[tuple[PurePosixPath, PurePosixPath, bool]] = []  # (source, destination, source is a dir)
    workdir = PurePosixPath("/")
    checked = set()
    for instruction in instructions:
        if instruction.keyword == "WORKDIR":
            workdir = workdir / instruction.args
        elif instruction.keyword in {"COPY", "ADD"}:
            words = [w for w in shlex.split(instruction.args) if not w.startswith("--")]
            assert len(words) >= 2, f"Dockerfile:{instruction.line}: COPY needs a source and a destination"
            *sources, dest = words
            destination = workdir / dest
            into_dir = dest.endswith("/") or len(sources) > 1
            for source in sources:
                assert (ROOT / source).exists(), (
                    f"Dockerfile:{instruction.line}: {source} is not in the repository"
                )
                src = PurePosixPath(source)
                is_dir = (ROOT / source).is_dir()
                copies.append(
                    (src, destination / src.name if into_dir and not is_dir else destination, is_dir)
                )
        elif instruction.keyword == "RUN":
            for call in script_calls(instruction.args, as_written=True):
                name = f"scripts/{PurePosixPath(call[0]).name}"
                checkout = (workdir / call[0]).parent.parent  # each script cds to the directory above its own
                for need in needs[name]:
                    where = _copied_to(copies, PurePosixPath(need))
                    assert checkout / need in where, (
                        f"Dockerfile:{instruction.line}: {name} needs {need} at {checkout / need}; "
                        f"copied to {sorted(map(str, where)) or 'nowhere'} before it"
                    )
                checked.add(name)
    assert checked == set(INSTALL_SCRIPTS)


def _copied_to(
    copies: list[tuple[PurePosixPath, PurePosixPath, bool]], need: PurePosixPath
) -> set[PurePosixPath]:
    """Where the copies made so far put the repository path ``need`` (a COPY of a directory copies its contents)."""
    found = set()
    for source, destination, is_dir in copies:
        if source == PurePosixPath("."):
            found.add(destination / need)
        elif is_dir and (need == source or source in need.parents):
            found.add(destination / need.relative_to(source))
        elif source == need:
            found.add(destination)
    return found


def test_dockerignore_keeps_local_state_out_and_the_sources_in(instructions: list[Instruction]) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        return any(
            fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(parts[-1], pattern.removeprefix("**/"))
            for pattern in patterns
            for prefix in prefixes
        )

    for local in [".venv", ".git", ".klingflow", ".mypy_cache", ".ruff_cache", ".pytest_cache", "renders"]:
        assert ignored(local), f".dockerignore must exclude {local}"
    assert ignored("pipeline/__pycache__/x.pyc")
    for instruction in instructions:
        if instruction.keyword in {"COPY", "ADD"}:
            for source in [w for w in shlex.split(instruction.args) if not w.startswith("--")][:-1]:
                assert not ignored(source), (
                    f".dockerignore excludes {source}, which Dockerfile:{instruction.line} copies"
                )


# --- what the image is -----------------------------------------------------------------------


def test_the_final_user_is_not_root_and_owns_the_working_directory(instructions: list[Instruction]) -> None:
    user = _last(instructions, "USER").args.split(":")[0]
    assert user not in {"root", "0"}
    runs = " && ".join(r.args for r in _runs(instructions))
    created = [c for c in shell_commands(runs) if c[0] == "useradd" and c[-1] == user]
    assert created, f"no RUN useradd creates {user}"
    assert "1000" in created[0], f"{user} must have uid 1000"
    workdir = _last(instructions, "WORKDIR").args
    owned = [
        c
        for c in shell_commands(runs)
        if workdir in c
        and (
            (c[0] == "install" and user in c) or (c[0] == "chown" and any(w.split(":")[0] == user for w in c))
        )
    ]
    assert owned, f"the working directory {workdir} (where runs are written) must belong to {user}"


def test_the_image_starts_a_prefect_worker_of_klingflow(instructions: list[Instruction]) -> None:
    assert _last(instructions, "ENTRYPOINT").exec_form() == ["klingflow"]
    cmd = _last(instructions, "CMD").exec_form()
    assert cmd[0] == "worker"
    assert cmd[cmd.index("--pool") + 1] == "klingflow"
    envs = [i.args for i in instructions if i.keyword == "ENV"]
    assert "PREFECT_SERVER_ANALYTICS_ENABLED=false" in " ".join(envs).split()


def test_the_default_command_is_a_klingflow_command(instructions: list[Instruction]) -> None:
    from pipeline.cli import app  # type: ignore[attr-defined]

    command = _last(instructions, "CMD").exec_form()[0]
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert command in commands, f"CMD runs 'klingflow {command}', but klingflow has no such command"


def test_the_base_image_has_the_python_and_debian_of_ci(
    instructions: list[Instruction], pyproject: dict[str, object]
) -> None:
    image = _last(instructions, "FROM").args.split()[0]
    name, _, tag = image.partition(":")
    assert name == "python", image
    version, _, variant = tag.partition("-")
    requires = pyproject["project"]["requires-python"]  # type: ignore[index]
    assert version in SpecifierSet(requires), f"{image} does not satisfy requires-python {requires}"
    codename = variant.split("-")[-1]
    os_release = Path("/etc/os-release")
    fields = dict(
        line.split("=", 1)
        for line in (os_release.read_text().splitlines() if os_release.exists() else [])
        if "=" in line
    )
    if fields.get("ID") != "debian":
        pytest.skip("not on Debian: CI's machines are, and only there must the image's release match")
    assert codename == fields.get("VERSION_CODENAME"), (
        f"{image} is Debian {codename}, CI runs the install scripts on {fields.get('VERSION_CODENAME')}"
    )


# --- the scripts, offline --------------------------------------------------------------------


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "scripts").glob("*.sh")))
def test_shell_scripts_parse_and_are_executable(script: str) -> None:
    path = ROOT / "scripts" / script
    subprocess.run([BASH, "-n", str(path)], check=True)
    assert os.access(path, os.X_OK), f"{path} is not executable (the Dockerfile and setup.sh run it directly)"


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("dev", [False, True])
def test_install_system_check_reports_and_installs_nothing(dev: bool) -> None:
    result = _run([BASH, INSTALL_SCRIPTS[0], *(["--dev"] if dev else []), "--check"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    listed = [line.split(": ")[1] for line in lines if line.endswith((": present", ": missing"))]
    assert listed == ["ffmpeg", "fonts-dejavu-core", *(["postgresql", "chromium"] if dev else [])]
    assert lines[-1] in {"install-system: nothing to install"} or "--no-install-recommends" in lines[-1]


def _fake_bin(tmp_path: Path, provides_ffmpeg: bool) -> Path:
    """A PATH holding only loggers for apt-get, sudo and rm (apt-get install 'installs' ffmpeg)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    chmod = shutil.which("chmod") or "/bin/chmod"
    install = (
        f': >"{bin_dir}/ffmpeg"; : >"{bin_dir}/ffprobe"; {chmod} +x "{bin_dir}/ffmpeg" "{bin_dir}/ffprobe"'
    )
    scripts = {
        "apt-get": f'echo "apt-get $*" >>"{log}"\ncase "$1" in install) {install if provides_ffmpeg else ":"};; esac',
        "sudo": f'echo "sudo $*" >>"{log}"; exec "$@"',
        "rm": f'echo "rm $*" >>"{log}"',
        "id": "echo 0",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "env").symlink_to(shutil.which("env") or "/usr/bin/env")
    return bin_dir


def test_install_system_check_with_ffmpeg_missing_names_it_and_runs_no_apt(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path, provides_ffmpeg=True)
    result = _run([BASH, INSTALL_SCRIPTS[0], "--check"], env={"PATH": str(bin_dir)})
    assert result.returncode == 0, result.stderr
    assert "install-system: ffmpeg: missing" in result.stdout
    assert "apt-get install -y --no-install-recommends ffmpeg" in result.stdout
    assert not (tmp_path / "calls.log").exists()


def test_install_system_installs_what_is_missing_once_and_cleans_apt_lists(tmp_path: Path) -> None:
    if not Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists():
        pytest.skip("the DejaVu fonts are missing here and the fake apt-get cannot provide them")
    bin_dir = _fake_bin(tmp_path, provides_ffmpeg=True)
    result = _run([BASH, INSTALL_SCRIPTS[0], "--clean"], env={"PATH": str(bin_dir)})
    assert result.returncode == 0, result.stderr
    assert "setup: installing ffmpeg with apt-get" in result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[:3] == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends ffmpeg",
        "apt-get clean",
    ]
    assert len(calls) == 4 and calls[3].startswith("rm -rf /var/lib/apt/lists/")
    # Everything present now: a second run does nothing at all.
    (tmp_path / "calls.log").unlink()
    again = _run([BASH, INSTALL_SCRIPTS[0], "--clean"], env={"PATH": str(bin_dir)})
    assert again.returncode == 0, again.stderr
    assert not (tmp_path / "calls.log").exists()


def test_install_system_fails_when_apt_get_does_not_deliver(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path, provides_ffmpeg=False)
    result = _run([BASH, INSTALL_SCRIPTS[0]], env={"PATH": str(bin_dir)})
    assert result.returncode == 1
    assert "ffmpeg still missing" in result.stderr


def test_install_system_refuses_unknown_options() -> None:
    result = _run([BASH, INSTALL_SCRIPTS[0], "--check", "--bogus"])
    assert result.returncode == 64
    assert "--bogus" in result.stderr


def test_install_steps_of_the_image_and_of_setup_as_they_would_run(
    instructions: list[Instruction], pyproject: dict[str, object]
) -> None:
    """The exact calls of the Dockerfile and setup.sh, with --check: same constraints, right targets."""
    (image_call,) = [
        c for r in _runs(instructions) for c in script_calls(r.args) if c[0] == INSTALL_SCRIPTS[1]
    ]
    (setup_call,) = [c for c in script_calls(SETUP.read_text()) if c[0] == INSTALL_SCRIPTS[1]]
    for call in [
        *[c for r in _runs(instructions) for c in script_calls(r.args) if c[0] == INSTALL_SCRIPTS[0]],
        *[c for c in script_calls(SETUP.read_text()) if c[0] == INSTALL_SCRIPTS[0]],
    ]:
        result = _run([BASH, *call, "--check"])
        assert result.returncode == 0, f"{shlex.join(call)}: {result.stderr}"

    def pip_install(call: list[str]) -> list[str]:
        result = _run([BASH, *call, "--check"])
        assert result.returncode == 0, f"{shlex.join(call)}: {result.stderr}"
        (line,) = [line for line in result.stdout.splitlines() if "-c constraints.txt" in line]
        return shlex.split(line.split("would run: ", 1)[1])

    image = pip_install(image_call)
    assert image[0] == "python3"  # the image's own interpreter, no virtual environment
    assert image[-1] == "." and "-e" not in image
    assert "--no-cache-dir" in image
    setup = pip_install(setup_call)
    assert setup[0] == ".venv/bin/python"
    assert setup[-2:] == ["-e", ".[dev]"]
    assert "dev" in pyproject["project"]["optional-dependencies"]  # type: ignore[index]
    assert image[1:4] == setup[1:4] == ["-m", "pip", "install"]
