"""The Dockerfile runs exactly the commands tested outside Docker (no Docker daemon needed).

It installs the Makefile's requirements file on the same Python, starts the app with the Makefile's `run` entry
point and flags (only the bind address differs, and a real server started from the CMD answers on a
non-loopback-bound address, as `docker run -p` needs), copies only tracked files, makes the directories its
non-root user writes, and its engine target's entry point runs here.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.ui import ROOT_ENV
from engine.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: what /venv/bin on the image PATH is


@dataclass(frozen=True)
class Instruction:
    stage: str
    op: str
    args: str


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Instruction]]:
    """(global ARG defaults, instructions with their stage name); continuation lines joined, comments dropped."""
    lines, buf = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        buf += raw.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        lines.append(re.sub(r"\s+", " ", buf.strip()))
        buf = ""
    args: dict[str, str] = {}
    out, stage = [], ""
    for line in lines:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "ARG" and not stage:
            k, _, v = rest.partition("=")
            args[k] = v
        if op == "FROM":
            stage = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
        out.append(Instruction(stage, op, rest))
    return args, out


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD argument lists (JSON exec form only: no shell in between)."""
    return json.loads(args)


def make_recipe(target: str) -> list[str]:
    """The recipe lines of a Makefile target, continuation lines joined."""
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    m = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
    assert m, f"no target {target!r} in the Makefile"
    return [re.sub(r"\s+", " ", ln.strip()) for ln in m.group(1).splitlines()]


def make_var(name: str) -> str:
    m = re.search(rf"^{name}\s*\??:?=\s*(\S+)", (REPO / "Makefile").read_text(), re.M)
    assert m, name
    return m.group(1)


def flags(argv: list[str]) -> dict[str, str]:
    """`--a.b value` and `--a.b=value` both as {"a.b": "value"}."""
    out, i = {}, 0
    while i < len(argv):
        a = argv[i]
        assert a.startswith("--"), argv
        if "=" in a:
            k, v = a[2:].split("=", 1)
            i += 1
        else:
            k, v = a[2:], argv[i + 1]
            i += 2
        out[k] = v
    return out


DOCKER_ARGS, STEPS = parse_dockerfile((REPO / "Dockerfile").read_text())


def stage(name: str) -> list[Instruction]:
    return [s for s in STEPS if s.stage == name]


def last(name: str, op: str) -> Instruction:
    return [s for s in stage(name) if s.op == op][-1]


def make_run_argv() -> list[str]:
    """The Makefile `run` command with its variables' defaults, the venv's streamlit as the program."""
    (line,) = make_recipe("run")
    line = line.replace("$(ADDRESS)", make_var("ADDRESS")).replace("$(PORT)", make_var("PORT"))
    argv = shlex.split(line)
    assert argv[0] == "$(VENV)/bin/streamlit"
    return ["streamlit", *argv[1:]]


def test_python_and_requirements_are_the_makefiles():
    image = DOCKER_ARGS["PYTHON_IMAGE"]
    version = re.match(r"python:(\d+\.\d+)-", image).group(1)
    assert make_var("PYTHON") == f"python{version}"  # make's venv and the image: one Python
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == version  # and the one testing here
    copies = [s.args for s in stage("deps") if s.op == "COPY"]
    runs = [s.args for s in stage("deps") if s.op == "RUN"]
    assert copies == ["requirements.txt ."]
    assert runs == ["python -m venv /venv && /venv/bin/pip install -r requirements.txt"]
    assert "$(PY) -m pip install -q -r requirements.txt" in make_recipe("$(VENV)/.runtime-$(REQ_HASH)")
    assert "requirements-dev" not in (REPO / "Dockerfile").read_text()  # no test tools in the image


def test_the_requirements_install_is_satisfied_by_the_tested_environment():
    """The image's `pip install -r requirements.txt`, resolved offline against the venv the tests run in."""
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "-r", "requirements.txt"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    pins = [ln.split("#")[0].strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    pins = [p for p in pins if p]
    assert len(pins) >= 10 and all("==" in p for p in pins)  # pinned: the image gets what was tested
    for pin in pins:  # each pin, at its exact version, is what the tests here import
        assert f"Requirement already satisfied: {pin} " in r.stdout, pin
    assert "Would install" not in r.stdout


def test_app_cmd_is_the_make_run_entry_point_with_the_container_address():
    cmd = exec_form(last("app", "CMD").args)
    make = make_run_argv()
    assert cmd[:3] == make[:3] == ["streamlit", "run", "app/serve.py"]
    docker_flags, make_flags = flags(cmd[3:]), flags(make[3:])
    assert make_flags.pop("server.address") == "127.0.0.1"  # local only outside Docker
    assert docker_flags.pop("server.address") == "0.0.0.0"  # the documented opt-in, needed for -p
    assert docker_flags == make_flags
    port = make_flags["server.port"]
    assert last("app", "EXPOSE").args == port
    health = exec_form(last("app", "HEALTHCHECK").args.split(" CMD ", 1)[1])
    assert f"http://127.0.0.1:{port}/_stcore/health" in health[-1]
    readme = (REPO / "README.md").read_text()
    published = re.findall(r"docker run [^`]*?-p (\d+):(\d+)", readme)
    assert published and all(inner == port for _, inner in published)  # README's -p reaches that port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(host: str, port: int, timeout_s: float = 90) -> bool:
    """True once /_stcore/health on host:port says ok; False if the address refuses while the server is up."""
    url = f"http://{host}:{port}/_stcore/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.read().decode().strip() == "ok"
    except OSError:
        return False


def wait_listening(proc: subprocess.Popen, port: int) -> None:
    """Block until the server accepts on 127.0.0.1 (it binds one socket: all addresses or this one)."""

    end = time.monotonic() + 90
    while time.monotonic() < end:
        assert proc.poll() is None, f"streamlit exited with {proc.returncode}"
        if answers("127.0.0.1", port, timeout_s=2):
            return
        time.sleep(0.2)  # port not bound yet: polling a socket, not synchronising threads
    raise TimeoutError(f"no server on port {port}")


@pytest.mark.parametrize("source", ["docker-cmd", "make-run"])
def test_the_server_binds_where_each_entry_point_says(source, tmp_path):
    """127.0.0.2 is loopback too, but only a server bound to all interfaces (0.0.0.0) answers there."""
    argv = exec_form(last("app", "CMD").args) if source == "docker-cmd" else make_run_argv()
    port = free_port()
    argv = [str(BIN / "streamlit"), *argv[1:]]
    argv = [f"--server.port={port}" if a.startswith("--server.port=") else a for a in argv]
    if "--server.port" in argv:
        argv[argv.index("--server.port") + 1] = str(port)
    assert str(port) in " ".join(argv)
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )  # reads .streamlit/config.toml (address 127.0.0.1): the flag must win
    try:
        wait_listening(proc, port)
        assert answers("127.0.0.2", port, timeout_s=5) is (source == "docker-cmd")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_every_copied_path_is_tracked_and_nothing_else_is_copied():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    sources = []
    for s in STEPS:
        if s.op != "COPY" or "--from=" in s.args:
            continue
        parts = [p for p in s.args.split() if not p.startswith("--")]
        sources += parts[:-1]
    assert sorted(sources) == sorted(
        ["requirements.txt", "engine/", "app/", "checkpoints/", ".streamlit/", "docs/"]
    )
    for src in sources:
        assert (REPO / src).exists(), src
        assert any(t == src or t.startswith(src) for t in tracked), f"{src} is not in git: CI builds lack it"
    assert "checkpoints/shapes-equimod.safetensors" in tracked  # the app's default model ships in the image
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git/", ".venv/", ".cache/", "runs/", "stores/"} <= set(ignored)  # local state stays out


def test_non_root_user_can_write_what_the_image_writes():
    """Caches (ENV), the stores the app builds on first open and runs/ exist and belong to the USER."""
    runtime = stage("runtime")
    ops = [s.op for s in runtime]
    user_at = ops.index("USER")
    user = runtime[user_at].args
    (useradd,) = [s.args for s in runtime if s.op == "RUN" and "useradd" in s.args]
    name = useradd.split()[-1]
    assert f"--uid {user}" in useradd
    workdir = last("runtime", "WORKDIR").args
    made = [
        s.args.split()[6:]
        for s in runtime[:user_at]
        if s.op == "RUN" and s.args.startswith(f"install -d -o {name} -g {name} ")
    ]
    writable = [Path(p) for group in made for p in group]
    env = dict(kv.split("=", 1) for s in runtime if s.op == "ENV" for kv in s.args.split())

    need = [Path(env["NUMBA_CACHE_DIR"]), Path(env["EQUILAB_CACHE"])]
    need += [Path(workdir) / k for k in ROOT_ENV if k != "checkpoints"]  # app's default store/run roots
    for p in need:
        assert any(p == w or p.is_relative_to(w) for w in writable), f"{p} not writable by {name}"
    assert f"chown={name}:{name}" in " ".join(s.args for s in runtime if s.op == "COPY")


def test_engine_target_entry_point_runs_here():
    entry = exec_form(last("engine", "ENTRYPOINT").args)
    default = exec_form(last("engine", "CMD").args)
    assert entry == ["python", "-m", "engine"]
    r = subprocess.run(
        [sys.executable, *entry[1:], *default], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    for command in ("train", "embed", "eval", "precompile"):
        assert re.search(rf"^\s+{command}\s", r.stdout, re.M), command
    # the image's build step and the header's example, parsed by the same CLI the entry point runs
    (precompile,) = [s.args for s in stage("runtime") if s.op == "RUN" and "engine" in s.args]
    assert shlex.split(precompile)[:3] == entry

    parser = build_parser()
    assert parser.parse_args(shlex.split(precompile)[3:]).command == "precompile"
    header = (REPO / "Dockerfile").read_text().replace("\\\n#", " ")
    example = re.search(r"equilab-engine (train [^\n]*)", header).group(1)
    args = parser.parse_args(shlex.split(example))
    assert (args.command, args.method, args.dataset) == ("train", "equimod", "cifar10")
