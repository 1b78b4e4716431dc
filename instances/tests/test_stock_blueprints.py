"""Every stock blueprint end to end, offline, through the live stack (supervisord, nginx, uv): each is
run unchanged against a fixture repository (or PyPI wheel) with its app's layout and a stand-in
for the app whose command line is parsed from the app's real argument list (appfixtures/). The
stand-in records what it got; each test checks the listen address and port (the socket itself),
the sub-path handling (and the proxy path in the blueprint's mode), the models mapping, the output
folder, the torch build and the requirements, the readiness route and the launch arguments.

Git URLs reach the fixtures through git's insteadOf configuration (aikore_site/testing.py),
packages through the local indexes (UV_INDEX_URL, AIKORE_TORCH_INDEX_BASE). The instances use this
machine's Python (the blueprints' own Python versions are not installed here, and per-instance
overrides are what the python_version field is for); blueprints pinned to a commit get the
fixture's commit the same way (git_ref), those pinned to a tag run their default ref."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from django.conf import settings

from instances import supervisor
from instances.blueprints import Blueprint, get_blueprint
from instances.models import Instance, InstanceStatus
from instances.tests import appfixtures
from instances.tests.appfixtures import fakeapp
from instances.tests.helpers import custom_blueprint, wait_for, wait_status
from instances.tests.wheels import TORCH_VERSION, git
from proxy.tests.helpers import app_client, apps_url, grant_app_access, public_url

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
MODELS = Path(settings.MODELS_DIR)


@pytest.fixture(scope="session")
def commits() -> dict[str, str]:
    """Fixture repositories, wheels and stand-ins, built once per test run."""
    return appfixtures.build(Path(settings.AIKORE_DATA_DIR))


@dataclass
class Run:
    instance: Instance
    bp: Blueprint
    spec: dict
    record: dict

    @property
    def port(self) -> int:
        return self.instance.port

    @property
    def app(self) -> Path:
        return self.instance.app_dir

    @property
    def out(self) -> str:
        return str(self.instance.output_dir)

    @property
    def prefix(self) -> str:
        return self.instance.url_path.rstrip("/")

    def log(self) -> str:
        return self.instance.log_tail(60000)


def start(blueprint: str, commits: dict[str, str], launch_args: str = "", torch_variant: str = "cpu") -> Run:
    spec = appfixtures.app_specs()[blueprint]
    bp = get_blueprint(blueprint)
    git_ref = commits[blueprint] if appfixtures.SHA_RE.fullmatch(bp.git_ref) else ""
    instance = Instance.objects.create_instance(
        name=f"Stock {bp.name}", blueprint=blueprint, python_version=PYTHON, torch_variant=torch_variant,
        git_ref=git_ref, launch_args=launch_args)
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=150)
    assert instance.status == InstanceStatus.RUNNING, f"{instance.error_message}\n{instance.log_tail(3000)}"
    record_path = instance.directory / "fixture-record.json"
    wait_for(record_path.exists, 10, f"{blueprint}: the fixture's record")
    return Run(instance, bp, spec, json.loads(record_path.read_text()))


def listening_addresses(port: int) -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def check_common(run: Run, alice, argv_tail: list[str] = ()) -> dict:
    """What every stock blueprint must do; returns what the app answered through the proxy."""
    instance, record, bp = run.instance, run.record, run.bp
    # Only on the loopback address, on the instance's port.
    assert listening_addresses(run.port) == {"127.0.0.1"}, listening_addresses(run.port)
    if "host" in record["bind"]:
        assert record["bind"] == {"host": "127.0.0.1", "port": run.port}, record["bind"]
    # Readiness asked one of the app's own routes (under its prefix when it keeps it), and got it.
    probes = [r for r in json.loads((instance.directory / "fixture-record.json").read_text())["requests"]
              if r["agent"] == "AiKore-readiness"]
    expected = (run.prefix if bp.proxy_mode == "keep" else "") + bp.ready_path
    assert bp.ready == "http" and probes and {p["path"] for p in probes} == {expected}, probes
    assert all(p["status"] == 200 for p in probes), probes
    assert bp.ready_path in run.spec["routes"]
    # The launch arguments come last, as the user typed them.
    if argv_tail:
        assert record["argv"][-len(argv_tail):] == list(argv_tail), record["argv"]
    # The app's own environment, the torch build of the instance's variant, its requirements.
    if bp.python_version and "packages" in record:  # a Python app, in the instance's environment
        assert record["executable"].startswith(str(instance.env_dir)), record["executable"]
        packages = record["packages"]
        for name, version in appfixtures.requirements(run.spec):
            if name.startswith("onnxruntime"):
                continue  # one build of the two, the instance's (test_facefusion)
            assert packages.get(name.lower().replace("_", "-")) == version, (name, version, packages)
        if bp.torch:
            assert record["torch_variant"] == instance.torch_variant, record["torch_variant"]
    # Through nginx, in the blueprint's proxy mode, with the app-access credential.
    with app_client(alice) as client:
        if bp.proxy_mode == "origin":
            assert instance.public_port
            grant_app_access(client, f"port:{instance.public_port}")
            url = public_url(instance.public_port, "/")
            seen = "/"
        elif bp.proxy_mode == "keep":
            url, seen = apps_url(instance.url_path), instance.url_path
        else:
            url, seen = apps_url(instance.url_path), "/"
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    body = response.json()
    assert body["path"] == seen, (body, seen)
    return body


def models(sub: str) -> str:
    return str(MODELS / sub)


def clean_checkout(path: Path) -> None:
    assert git("status", "--porcelain", cwd=path) == "", f"{path}: links and files of AiKore must not dirty git status"


# --- the apps -------------------------------------------------------------------------------------


def test_comfyui(live, alice, commits):
    run = start("comfyui", commits, launch_args="--lowvram --preview-method auto")
    yaml = run.instance.directory / "extra_model_paths.yaml"
    assert run.record["argv"] == [
        "--listen", "127.0.0.1", "--port", str(run.port), "--extra-model-paths-config", str(yaml),
        "--output-directory", run.out, "--enable-manager", "--lowvram", "--preview-method", "auto"]
    check_common(run, alice)
    assert run.record["args"]["output_directory"] == run.out and Path(run.out).is_dir()
    text = yaml.read_text()
    assert f"base_path: '{MODELS}'" in text and "is_default: true" in text
    for line in ("checkpoints: checkpoints", "loras: loras", "vae: vae", "controlnet: controlnet"):
        assert f"    {line}\n" in text
    assert run.record["packages"]["comfyui-manager"] == "4.2.2"
    assert run.record["packages"]["comfyui-frontend-package"] == "1.53.6"
    assert run.record["packages"]["torch"] == TORCH_VERSION  # requirements' bare `torch` kept the variant's
    assert git("describe", "--tags", cwd=run.app) == "v0.38.1"  # the blueprint's default ref
    clean_checkout(run.app)


def test_an_option_the_app_would_reject_fails_the_start(live, commits):
    """The stand-in refuses what ComfyUI's parser refuses (--normalvram was removed): the instance
    crashes with argparse's status 2 and says why."""
    with pytest.raises(SystemExit) as exc:
        fakeapp.parse(fakeapp.load_spec("comfyui"), ["--normalvram"])
    assert exc.value.code == 2
    instance = Instance.objects.create_instance(name="Stock bad flag", blueprint="comfyui", python_version=PYTHON,
                                                torch_variant="cpu", launch_args="--normalvram")
    instance.start()
    wait_for(lambda: "unrecognized arguments: --normalvram" in instance.log_tail(20000), 120, "argparse's refusal")
    instance.stop()


def test_forge(live, alice, commits):
    run = start("forge", commits, launch_args="--medvram")
    argv = run.record["argv"]
    assert argv[:6] == ["--server-name", "127.0.0.1", "--port", str(run.port), "--subpath", f"instance/{run.instance.slug}"]
    check_common(run, alice, ["--skip-torch-cuda-test", "--medvram"])
    args = run.record["args"]
    assert run.record["root_path"] == run.prefix  # Gradio's root_path: "/" + --subpath
    assert (args["ckpt_dir"], args["vae_dir"], args["text_encoder_dir"], args["lora_dir"]) == (
        models("checkpoints"), models("vae"), models("text_encoders"), models("loras"))
    assert (args["embeddings_dir"], args["hypernetwork_dir"], args["controlnet_dir"], args["esrgan_models_path"]) == (
        models("embeddings"), models("hypernetworks"), models("controlnet"), models("upscale_models"))
    assert args["enable_insecure_extension_access"] and not args["listen"]
    assert (run.app / "outputs").resolve() == Path(run.out).resolve()
    assert "COMMANDLINE_ARGS" not in run.record["env"]
    assert "pip" in run.record["packages"] and run.record["packages"]["gradio"] == "4.40.0"
    clean_checkout(run.app)


def test_sdnext(live, alice, commits):
    run = start("sdnext", commits, launch_args="--medvram")
    body = check_common(run, alice, ["--medvram"])
    args = run.record["args"]
    assert (args["server_name"], args["port"], args["subpath"]) == ("127.0.0.1", run.port, run.prefix)
    assert run.record["root_path"] == run.prefix and body["route"] == "/"  # mounted under the kept prefix
    assert args["skip_torch"] and args["skip_git"] and args["insecure"] and not args["listen"]
    assert (args["vae_dir"], args["lora_dir"], args["embeddings_dir"], args["hypernetwork_dir"]) == (
        models("vae"), models("loras"), models("embeddings"), models("hypernetworks"))
    config = json.loads((run.app / "config.json").read_text())
    assert config == {"ckpt_dir": models("checkpoints"), "unet_dir": models("diffusion_models"),
                      "te_dir": models("text_encoders"), "hfcache_dir": models("huggingface")}
    # It redirects everything outside its prefix there (why the proxy keeps it).
    direct = httpx.get(f"http://127.0.0.1:{run.port}/", follow_redirects=False)
    assert direct.status_code == 308 and direct.headers["location"] == run.prefix + "/"
    assert (run.app / "outputs").resolve() == Path(run.out).resolve()
    # Settings already there are the user's: a second start keeps them.
    config["ckpt_dir"] = "/elsewhere"
    (run.app / "config.json").write_text(json.dumps(config))
    run.instance.restart()
    wait_status(run.instance, InstanceStatus.RUNNING, timeout=60)
    assert json.loads((run.app / "config.json").read_text())["ckpt_dir"] == "/elsewhere"
    assert git("describe", "--tags", cwd=run.app) == "2026-07-14"
    clean_checkout(run.app)


def test_invokeai(live, alice, commits):
    run = start("invokeai", commits)
    assert run.record["argv"] == ["--root", str(run.app)]
    check_common(run, alice)
    env = run.record["env"]
    assert (env["INVOKEAI_HOST"], env["INVOKEAI_PORT"], env["INVOKEAI_OUTPUTS_DIR"]) == ("127.0.0.1", str(run.port), run.out)
    assert env["INVOKEAI_HTTP_COMPRESSION_LEVEL"] == "0"  # socket.io behind a proxy
    assert env["GRADIO_ROOT_PATH"] == run.prefix and env["HF_HUB_CACHE"] == models("huggingface")
    assert run.record["packages"]["invokeai"] == "6.14.2"  # the blueprint's version (its "git ref")
    assert f"Scan Folder (in place): {models('checkpoints')}" in run.log()


def test_fluxgym(live, alice, commits):
    run = start("fluxgym", commits, launch_args="--ignored")
    assert run.record["argv"] == []  # it takes none: the log says so
    assert "FluxGym takes no command-line arguments; ignoring: --ignored" in run.log()
    check_common(run, alice)
    env = run.record["env"]
    assert (env["GRADIO_SERVER_NAME"], env["GRADIO_SERVER_PORT"], env["GRADIO_ROOT_PATH"]) == (
        "127.0.0.1", str(run.port), run.prefix)
    for sub in ("unet", "clip", "vae"):
        assert (run.app / "models" / sub).resolve() == (MODELS / sub).resolve(), sub
    assert (run.app / "outputs").resolve() == Path(run.out).resolve()  # the LoRAs
    assert run.record["imports"] == {"library": True}  # sd-scripts, installed from its folder (-e .)
    assert git("describe", "--tags", cwd=run.app / "sd-scripts") == "v0.10.1"
    assert run.record["packages"]["transformers"] == "4.49.0"  # FluxGym's pin after sd-scripts'
    assert "the first training fetches its base model (flux-dev ~23 GB" in run.log()
    clean_checkout(run.app)


def test_kohya_ss(live, alice, commits):
    run = start("kohya_ss", commits, launch_args="--language en")
    config = run.instance.directory / "kohya-config.toml"
    assert run.record["argv"] == [
        "--noverify", "--headless", "--listen", "127.0.0.1", "--server_port", str(run.port),
        "--root_path", run.prefix, "--config", str(config), "--language", "en"]
    check_common(run, alice)
    assert run.record["root_path"] == run.prefix
    text = config.read_text()
    assert f'models_dir = "{models("checkpoints")}"' in text and f'output_dir = "{run.out}"' in text
    assert (run.app / "sd-scripts" / "train_network.py").exists()  # the submodule
    assert run.record["imports"] == {"library": True}
    assert git("describe", "--tags", cwd=run.app) == "v26.0.0"
    clean_checkout(run.app)


def test_ai_toolkit(live, alice, commits):
    run = start("ai-toolkit", commits)
    record = run.record
    assert record["argv"] == ["start", "--port", str(run.port)]
    assert record["cwd"] == str(run.app / "ui")
    # Its front server listens with server.listen(port), on every interface: the preload moved it,
    # in the primary and in both cluster workers.
    wait_for(lambda: len(json.loads((run.instance.directory / "fixture-record.json").read_text())["workers"]) == 2,
             10, "both cluster workers listening")
    record = json.loads((run.instance.directory / "fixture-record.json").read_text())
    assert {w["address"]["address"] for w in record["workers"]} == {"127.0.0.1"}
    assert "node-loopback.cjs" in record["env"]["NODE_OPTIONS"]
    assert "[aikore] node: listen on all interfaces moved to 127.0.0.1" in run.log()
    check_common(run, alice)
    # The job worker runs beside it, with the environment's python3 first on PATH.
    worker = json.loads((run.instance.directory / "fixture-worker.json").read_text())
    assert worker["cwd"] == str(run.app / "ui")
    assert worker["env"]["PATH"].split(":")[0] == str(run.instance.env_dir / "bin")
    # The training folder defaults to the instance's output folder (its database).
    with sqlite3.connect(run.app / "aitk_db.db") as con:
        assert con.execute("SELECT value FROM Settings WHERE key = 'TRAINING_FOLDER'").fetchone() == (run.out,)
    assert record["env"]["HF_HUB_CACHE"] == models("huggingface")
    # Both processes are the instance: stopping it leaves neither.
    pids = [record["pid"], worker["pid"]]
    run.instance.stop()
    wait_status(run.instance, InstanceStatus.STOPPED)
    wait_for(lambda: not any(psutil.pid_exists(p) for p in pids), 10, "no ai-toolkit process left")


def test_fooocus(live, alice, commits):
    run = start("fooocus", commits, launch_args="--always-cpu 4")
    assert run.record["argv"] == [
        "--listen", "127.0.0.1", "--port", str(run.port), "--disable-in-browser", "--disable-analytics",
        "--output-path", run.out, "--always-cpu", "4"]
    check_common(run, alice)
    config = json.loads((run.app / "config.txt").read_text())
    assert config["path_checkpoints"] == [models("checkpoints")] and config["path_loras"] == [models("loras")]
    assert config["path_vae_approx"] == models("vae_approx") and config["path_embeddings"] == models("embeddings")
    assert "Fooocus downloads its default SDXL checkpoint (~7 GB)" in run.log()
    packages = run.record["packages"]
    assert (packages["gradio"], packages["fastapi"], packages["pydantic"]) == ("3.41.2", "0.104.1", "2.9.2")
    assert git("describe", "--tags", cwd=run.app) == "v2.5.5"


def test_iopaint(live, alice, commits):
    run = start("iopaint", commits, launch_args="--no-half --interactive-seg-model sam2_1_tiny")
    assert run.record["argv"] == [
        "start", "--host", "127.0.0.1", "--port", str(run.port), "--device", "cpu", "--model-dir", models("iopaint"),
        "--output-dir", run.out, "--no-half", "--interactive-seg-model", "sam2_1_tiny"]
    check_common(run, alice)
    assert run.record["packages"]["iopaint"] == "1.6.0"
    assert "IOPaint downloads its default model big-lama.pt (~200 MB)" in run.log()


def test_wan2gp(live, alice, commits):
    run = start("wan2gp", commits, launch_args="--attention sdpa", torch_variant=appfixtures.PINNED_VARIANT)
    assert run.record["argv"] == [
        "--server-name", "127.0.0.1", "--server-port", str(run.port), "--loras", models("loras"),
        "--attention", "sdpa"]
    check_common(run, alice)
    assert run.record["env"]["GRADIO_ROOT_PATH"] == run.prefix
    assert (run.record["packages"]["torch"], run.record["torch_variant"]) == ("2.10.0", appfixtures.PINNED_VARIANT)
    assert (run.app / "outputs").resolve() == Path(run.out).resolve()
    clean_checkout(run.app)


def test_facefusion(live, alice, commits):
    run = start("facefusion", commits, launch_args="--face-detector-score 0.35", torch_variant="cu126")
    assert run.record["argv"] == [
        "run", "--output-path", str(run.app / "outputs"), "--execution-providers", "cuda",
        "--face-detector-score", "0.35"]
    check_common(run, alice)
    env = run.record["env"]
    assert (env["GRADIO_SERVER_NAME"], env["GRADIO_SERVER_PORT"], env["GRADIO_ROOT_PATH"]) == (
        "127.0.0.1", str(run.port), run.prefix)
    packages = run.record["packages"]
    assert packages.get("onnxruntime-gpu") == "1.24.4" and "onnxruntime" not in packages  # the CUDA 12 build only
    assert (run.app / ".assets" / "models").resolve() == (MODELS / "facefusion").resolve()
    assert (run.app / "outputs").resolve() == Path(run.out).resolve()
    clean_checkout(run.app)


def test_swarmui(live, alice, commits):
    run = start("swarmui", commits, launch_args="--loglevel Debug")
    assert run.record["argv"] == ["--launch_mode", "none", "--host", "127.0.0.1", "--port", str(run.port),
                                  "--loglevel", "Debug"]
    check_common(run, alice)
    settings_fds = (run.app / "Data" / "Settings.fds").read_text()
    assert f"\tModelRoot: {MODELS}\n\tSDModelFolder: checkpoints\n" in settings_fds
    assert f"\tOutputPath: {run.out}\n" in settings_fds and "\tPortCanChange: false\n" in settings_fds
    assert (run.app / "src" / "bin" / "last_build").read_text().strip() == git("rev-parse", "HEAD", cwd=run.app)
    assert git("describe", "--tags", cwd=run.app) == "0.9.8-Beta"


def test_every_stock_app_has_a_test_and_a_spec():
    tested = {name.removeprefix("test_").replace("_", "-") for name in globals() if name.startswith("test_")}
    apps = {bp for bp in appfixtures.app_specs()}
    assert {a.replace("_", "-") for a in apps} <= tested, apps
    stock = {p.stem for p in (appfixtures.REPO_ROOT / "blueprints").glob("*.sh")}
    assert apps <= stock and len(apps) >= 12


def test_a_missing_toolchain_fails_the_install_at_a_step_naming_it(live):
    """What AI Toolkit and SwarmUI do when Node.js or the .NET SDK is missing or too old: the install
    stops at its check, the instance is failed (no crash restarts) and says what to install."""
    bp = custom_blueprint("needs-dotnet", """#!/usr/bin/env bash
# aikore.name: Needs a newer .NET (test)
# aikore.kind: test
# aikore.python: 3
set -euo pipefail
source "$AIKORE_HOME/blueprints/functions.sh"
install() {
    aikore_require_dotnet 99
}
aikore_install install
aikore_exec sleep 100
""")
    instance = Instance.objects.create_instance(name="Stock toolchain", blueprint=bp)
    instance.start()
    wait_status(instance, InstanceStatus.FAILED, timeout=60)
    assert "Install step 'checking for the .NET 99 SDK' failed" in instance.error_message, instance.error_message
    assert "install the .NET 99 SDK (Microsoft's package dotnet-sdk-99.0" in instance.error_message


def test_onetrainer(live, commits):
    """A desktop program: no web page, its window on the instance's desktop (Xvnc + openbox, no
    kiosk browser); ready once that window is managed."""
    bp = get_blueprint("onetrainer")
    assert bp.desktop_program and bp.ready == "window"
    instance = Instance.objects.create_instance(
        name="Stock OneTrainer", blueprint="onetrainer", python_version=PYTHON, torch_variant="cpu",
        git_ref=commits["onetrainer"], launch_args="-style Fusion")
    assert instance.persistent_mode  # implied: it has nothing but its desktop
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=150)
    assert instance.status == InstanceStatus.RUNNING, f"{instance.error_message}\n{instance.log_tail(3000)}"
    wait_for((instance.directory / "fixture-record.json").exists, 10, "the fixture's record")
    record = json.loads((instance.directory / "fixture-record.json").read_text())
    assert record["argv"] == ["-style", "Fusion"]  # Qt's own options, passed on
    assert record["env"]["DISPLAY"] == f":{instance.vnc_display}" and record["env"]["QT_QPA_PLATFORM"] == "xcb"
    assert record["executable"].startswith(str(instance.env_dir)) and record["cwd"] == str(instance.app_dir)
    assert record["packages"]["pyside6"] == "6.11.1" and record["packages"]["torch"] == TORCH_VERSION
    assert record["env"]["HF_HUB_CACHE"] == models("huggingface")
    names = subprocess.run(["xwininfo", "-display", f":{instance.vnc_display}", "-root", "-tree"],
                           capture_output=True, text=True, timeout=10).stdout
    assert '"OneTrainer"' in names, names
    assert supervisor.desktop_programs(instance) == ("xvnc", "wm")  # no browser
    assert "OneTrainer opens on the instance's desktop" in instance.log_tail(20000)
    instance.stop()
    wait_status(instance, InstanceStatus.STOPPED, timeout=30)
    assert psutil.pid_exists(record["pid"]) is False or psutil.Process(record["pid"]).status() == psutil.STATUS_ZOMBIE
