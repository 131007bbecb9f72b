"""sd_course.publish.hub and `sd-course push`, against a stand-in for the Hugging Face Hub on 127.0.0.1.

The stand-in (:class:`FakeHub`, a stdlib HTTP server in a thread of the test process) implements the endpoints
that huggingface_hub really calls, as read in its source: ``GET /api/whoami-v2``, ``POST /api/repos/create``,
``POST .../preupload/{rev}`` (it answers "regular" for every file, so files travel base64 in the commit, as small
files do on the real Hub), ``POST .../commit/{rev}`` (ndjson; hf_xet's pipelined upload and the plain
create_commit both end there), ``POST /api/validate-yaml``, ``GET /api/models/{id}[/revision/{rev}]``,
``GET .../tree/{rev}``, and ``HEAD``/``GET /{id}/resolve/{rev}/{file}`` with the ``X-Repo-Commit`` and ``ETag``
headers that downloads need. huggingface_hub reads HF_ENDPOINT when it is imported, so the round trip (push, then
``DiffusionPipeline.from_pretrained``) runs in subprocesses with HF_ENDPOINT pointing at the stand-in, as a user's
separate commands would; the error cases run `sd-course push` in this process with huggingface_hub's ENDPOINT
constant pointed at it (faster). Nothing leaves 127.0.0.1; the server stops with each test (and after 10 minutes
in any case).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from conftest import REPO

from sd_course.core.errors import InputError
from sd_course.publish import cards, hub

TOKENS = {"hf_alice_write_0123456789": "alice", "hf_bob_write_9876543210": "bob"}
ALICE, BOB = "hf_alice_write_0123456789", "hf_bob_write_9876543210"


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Repos in memory: ``repos[repo_id] = {"owner", "private", "files": {path: bytes}, "sha"}``."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.drop_commits = False  # drop the connection in the middle of every commit request
        self.dropped = 0
        self.lock = threading.Lock()
        hub_state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub_state.handle(self, "GET")

            def do_HEAD(self):
                hub_state.handle(self, "HEAD")

            def do_POST(self):
                hub_state.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs=dict(poll_interval=0.1), daemon=True)
        self.watchdog = threading.Timer(600, self.server.shutdown)  # bounded even if a test forgets to stop it
        self.watchdog.daemon = True

    def start(self):
        self.thread.start()
        self.watchdog.start()
        return self

    def stop(self):
        self.watchdog.cancel()
        self.server.shutdown()
        self.server.server_close()

    def add_repo(self, repo_id: str, owner: str, files: dict[str, bytes] | None = None, private: bool = False):
        self.repos[repo_id] = dict(owner=owner, private=private, files=dict(files or {}), sha="0" * 40)
        self.repos[repo_id]["sha"] = self._sha(repo_id, "init")

    def _sha(self, repo_id: str, summary: str) -> str:
        repo = self.repos[repo_id]
        digest = hashlib.sha1(repo["sha"].encode() + summary.encode())
        for path in sorted(repo["files"]):
            digest.update(path.encode() + git_blob_sha(repo["files"][path]).encode())
        return digest.hexdigest()

    # -- HTTP ----------------------------------------------------------------------------------------------------

    @staticmethod
    def send(h, status: int, body=b"", headers: dict | None = None, head: bool = False):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        h.send_response(status)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def error(self, h, status: int, message: str, code: str | None = None, head: bool = False, extra=None,
              body: dict | None = None):
        headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {}), **(extra or {})}
        self.send(h, status, {"error": message, **(body or {})}, headers, head)

    def handle(self, h, method: str):
        url = urlsplit(h.path)
        path, query = unquote(url.path), parse_qs(url.query)
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0)) if method == "POST" and not (
            self.drop_commits and "/commit/" in path) else b""
        auth = h.headers.get("Authorization", "")
        user = None
        if auth:
            user = TOKENS.get(auth.removeprefix("Bearer ").strip())
            if user is None:
                return self.error(h, 401, "Invalid credentials in Authorization header", head=method == "HEAD")
        with self.lock:
            return self.route(h, method, path, query, body, user)

    def route(self, h, method, path, query, body, user):
        head = method == "HEAD"
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/api/whoami-v2":
            if user is None:
                return self.error(h, 401, "Invalid credentials in Authorization header")
            return self.send(h, 200, {"type": "user", "name": user, "orgs": []})
        if method == "POST" and path == "/api/validate-yaml":
            return self.send(h, 200, {"errors": [], "warnings": []})
        if method == "POST" and path == "/api/repos/create":
            if user is None:
                return self.error(h, 401, "Invalid credentials in Authorization header")
            payload = json.loads(body)
            namespace = payload.get("organization") or user
            repo_id = f"{namespace}/{payload['name']}"
            if namespace != user:
                return self.error(h, 403, f'You don\'t have the rights to create a model under the namespace '
                                          f'"{namespace}"')
            if repo_id in self.repos:
                return self.error(h, 409, "You already created this model repo",
                                  body={"url": f"{self.url}/{repo_id}"})
            self.add_repo(repo_id, user, private=payload.get("visibility") == "private")
            return self.send(h, 200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id})
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            repo = self.repos.get(repo_id)
            if repo is None or (repo["private"] and user != repo["owner"]):
                return self.error(h, 404, "Repository not found", "RepoNotFound")
            if method == "GET" and (not rest or rest[0] == "revision"):
                return self.send(h, 200, dict(
                    id=repo_id, author=repo["owner"], sha=repo["sha"], private=repo["private"], tags=[],
                    siblings=[{"rfilename": p, "size": len(d)} for p, d in sorted(repo["files"].items())]))
            if method == "GET" and rest and rest[0] == "tree":
                return self.send(h, 200, self.tree(repo, "/".join(rest[2:])))
            if method == "POST" and rest and rest[0] in ("preupload", "commit"):
                if user is None:
                    return self.error(h, 401, "Invalid credentials in Authorization header")
                if user != repo["owner"]:
                    return self.error(h, 403, f"You don't have write access to {repo_id}")
                if rest[0] == "preupload":
                    files = json.loads(body)["files"]
                    return self.send(h, 200, {"files": [dict(
                        path=f["path"], uploadMode="regular", shouldIgnore=False,
                        oid=git_blob_sha(repo["files"][f["path"]]) if f["path"] in repo["files"] else None)
                        for f in files]})
                if self.drop_commits:  # read a little of the upload, then hang up without an answer
                    h.rfile.read(min(1024, int(h.headers.get("Content-Length") or 0)))
                    self.dropped += 1
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return None
                return self.commit(h, repo_id, body)
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            repo = self.repos.get(repo_id)
            if repo is None or (repo["private"] and user != repo["owner"]):
                return self.error(h, 404, "Repository not found", "RepoNotFound", head)
            if revision not in ("main", repo["sha"]):
                return self.error(h, 404, f"Invalid rev id: {revision}", "RevisionNotFound", head)
            if filename not in repo["files"]:
                return self.error(h, 404, "Entry not found", "EntryNotFound", head, {"X-Repo-Commit": repo["sha"]})
            data = repo["files"][filename]
            return self.send(h, 200, data, {"X-Repo-Commit": repo["sha"], "ETag": f'"{git_blob_sha(data)}"',
                                            "Content-Type": "application/octet-stream"}, head)
        return self.error(h, 404, f"no route {method} {path} in the stand-in Hub")

    @staticmethod
    def tree(repo: dict, prefix: str) -> list[dict]:
        entries, folders = [], set()
        for path, data in sorted(repo["files"].items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            entries.append(dict(type="file", path=path, size=len(data), oid=git_blob_sha(data)))
            folders.update("/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1))
        return [dict(type="directory", path=f, oid="0" * 40) for f in sorted(folders)] + entries

    def commit(self, h, repo_id: str, body: bytes):
        repo, summary, new_files = self.repos[repo_id], "", {}
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                summary = item["value"]["summary"]
            elif item["key"] == "file":
                new_files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            else:
                return self.error(h, 400, f"the stand-in Hub does not support {item['key']!r} operations")
        repo["files"].update(new_files)
        repo["sha"] = self._sha(repo_id, summary)
        return self.send(h, 200, {"success": True, "commitOid": repo["sha"],
                                  "commitUrl": f"{self.url}/{repo_id}/commit/{repo['sha']}"})


@pytest.fixture
def fake_hub():
    server = FakeHub().start()
    try:
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------------------------------
# helpers: a tiny pipeline, its fingerprint, a push in a subprocess
# ----------------------------------------------------------------------------------------------------------------


def tiny_ddpm(folder: Path) -> Path:
    from diffusers import DDPMPipeline, DDPMScheduler

    from sd_course.core.models import build_unet

    unet = build_unet("tiny", resolution=16, channels=1)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(folder)
    (folder / "checkpoint-2").mkdir()
    (folder / "checkpoint-2" / "optimizer.bin").write_bytes(b"not for the Hub")
    (folder / "logs").mkdir()
    (folder / "logs" / "events.out").write_bytes(b"tensorboard")
    (folder / ".tmp-partial").write_bytes(b"half-written")
    return folder


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file's sha256 and mtime: proof that a push left the folder as it was."""
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def hub_env(fake_hub, tmp_path, token=None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(HF_ENDPOINT=fake_hub.url, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf_home"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost", PYTHONPATH=str(REPO), **extra)
    env.pop("HTTP_PROXY", None), env.pop("HTTPS_PROXY", None), env.pop("http_proxy", None), env.pop("https_proxy", None)
    if token:
        env["HF_TOKEN"] = token
    return env


def run(args: list[str], env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=str(REPO))


def push(folder: Path, repo_id: str, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return run(["-m", "sd_course.app.cli", "push", str(folder), "--repo_id", repo_id, *extra], env)


# ----------------------------------------------------------------------------------------------------------------
# against the stand-in Hub
# ----------------------------------------------------------------------------------------------------------------


def test_push_then_load_back_with_plain_diffusers(fake_hub, tmp_path):
    folder = tiny_ddpm(tmp_path / "tiny-ddpm")
    before = fingerprint(folder)
    result = push(folder, "alice/tiny-ddpm", hub_env(fake_hub, tmp_path, ALICE))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"pushed {folder} to {fake_hub.url}/alice/tiny-ddpm" in result.stdout
    assert ALICE not in result.stdout + result.stderr
    assert fingerprint(folder) == before and not (folder / "README.md").exists()  # the card went to the Hub only

    remote = fake_hub.repos["alice/tiny-ddpm"]["files"]
    local = {p: (folder / p).read_bytes() for p in before}
    sent = {p for p in local if not p.startswith(("checkpoint-", "logs/", ".tmp"))}
    assert sent == {"model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
                    "unet/diffusion_pytorch_model.safetensors"}
    assert set(remote) == sent | {"README.md", "samples.png"}  # no checkpoints, logs or hidden files
    assert all(remote[p] == local[p] for p in sent)
    card = remote["README.md"].decode()
    assert "library_name: diffusers" in card and "pipeline_tag: unconditional-image-generation" in card
    assert 'DiffusionPipeline.from_pretrained("alice/tiny-ddpm")' in card

    # Load it back through the same endpoint, into a fresh cache, with no token: plain diffusers, then compare.
    load = run(["-c", f"""
import hashlib, json, os, torch
from pathlib import Path
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained("alice/tiny-ddpm")
snap = next(Path(os.environ["HF_HOME"], "hub", "models--alice--tiny-ddpm", "snapshots").iterdir())
files = {{p.relative_to(snap).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
         for p in snap.rglob("*") if p.is_file()}}
local = DiffusionPipeline.from_pretrained({str(folder)!r})
same = [torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), local.unet.state_dict().values())]
print(json.dumps(dict(cls=type(pipe).__name__, files=files, same_weights=all(same))))
"""], hub_env(fake_hub, tmp_path / "reader"))
    assert load.returncode == 0, load.stderr[-3000:]
    loaded = json.loads(load.stdout.strip().splitlines()[-1])
    assert loaded["cls"] == "DDPMPipeline" and loaded["same_weights"]
    for path in sent:  # byte-identical to the local folder
        assert loaded["files"][path] == hashlib.sha256(local[path]).hexdigest(), path


@pytest.fixture
def hub_here(fake_hub, monkeypatch, tmp_path):
    """The error cases run `sd-course push` in this process (faster than a new one): huggingface_hub's endpoint and
    offline switch are its module constants, pointed at the stand-in for the test."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", fake_hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", ALICE)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setattr(cards, "CARD_GRID", (4, "dpm++", 3))  # a smaller grid for the card: these tests are on errors
    return fake_hub


def push_here(folder: Path, repo_id: str, capsys, *extra: str) -> tuple[int, str]:
    from sd_course.app.cli import main

    rc = main(["push", str(folder), "--repo_id", repo_id, *extra])
    out, err = capsys.readouterr()
    return rc, out + err


def test_push_training_output_names_the_repo_after_the_folder(hub_here, tmp_path, caplog):
    """The training loop's entry point (--push_to_hub): no --hub_model_id -> the output folder's name in the token
    owner's namespace, as in diffusers' examples; --hub_token gets the warning and is never shown."""
    run_dir = tiny_ddpm(tmp_path / "my-run")
    (run_dir / "training_config.json").write_text(json.dumps({"hub_token": ALICE, "seed": 0}))  # a careless log
    before = fingerprint(run_dir)
    url = hub.push_training_output(run_dir, None, ALICE, True)
    assert url == f"{hub_here.url}/alice/my-run" and hub_here.repos["alice/my-run"]["private"]
    assert "--hub_token puts your Hub token on the command line" in caplog.text and ALICE not in caplog.text
    files = hub_here.repos["alice/my-run"]["files"]
    assert "README.md" in files and fingerprint(run_dir) == before
    assert json.loads(files["training_config.json"]) == {"hub_token": "***", "seed": 0}
    assert not any(ALICE.encode() in data for data in files.values())


def test_push_with_a_bad_token(hub_here, tmp_path, capsys, caplog):
    folder = tiny_ddpm(tmp_path / "tiny")
    before = fingerprint(folder)
    rc, output = push_here(folder, "alice/tiny", capsys, "--token", "hf_not_a_valid_token_42")
    assert rc == 2
    assert "error: the Hub rejected your token (401 Unauthorized" in output, output
    assert "hf auth login" in output and "Traceback" not in output
    assert "prefer `hf auth login`" in caplog.text  # the warning for a token on the command line
    assert "hf_not_a_valid_token_42" not in output + caplog.text
    assert fingerprint(folder) == before and "alice/tiny" not in hub_here.repos


def test_push_to_a_repo_of_someone_else(hub_here, tmp_path, capsys):
    hub_here.add_repo("bob/taken", "bob", {"README.md": b"bob's model"})
    folder = tiny_ddpm(tmp_path / "taken")
    before = fingerprint(folder)
    rc, output = push_here(folder, "bob/taken", capsys)
    assert rc == 2
    assert "error: you may not write to 'bob/taken' (403 Forbidden" in output, output
    assert "--repo_id YOUR_NAME/taken" in output and ALICE not in output
    assert fingerprint(folder) == before and hub_here.repos["bob/taken"]["files"] == {"README.md": b"bob's model"}


def test_interrupted_upload_then_resume(hub_here, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    # With hf_xet installed, huggingface_hub's pipelined upload retries a dropped commit 5 times over ~25 s before
    # giving up; without it the commit is sent once. Same endpoints, same error at the end: test the quick one.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    folder = tiny_ddpm(tmp_path / "tiny")
    before = fingerprint(folder)
    hub_here.drop_commits = True
    rc, output = push_here(folder, "alice/tiny", capsys)
    assert rc == 2 and hub_here.dropped >= 1
    assert f"error: the upload to {hub_here.url} was interrupted" in output, output
    assert "Run the same command again" in output and "Traceback" not in output
    assert fingerprint(folder) == before and not list(tmp_path.glob("**/README.md"))
    assert hub_here.repos["alice/tiny"]["files"] == {}  # created, nothing committed
    hub_here.drop_commits = False
    rc, output = push_here(folder, "alice/tiny", capsys)  # the same command again finishes it
    assert rc == 0, output
    assert "unet/diffusion_pytorch_model.safetensors" in hub_here.repos["alice/tiny"]["files"]
    assert fingerprint(folder) == before


# ----------------------------------------------------------------------------------------------------------------
# no server needed: the checks that come before any upload, and the cards
# ----------------------------------------------------------------------------------------------------------------


def test_checks_before_any_upload(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with pytest.raises(InputError, match="does not exist"):
        hub.push_folder(tmp_path / "missing", "alice/x")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        hub.push_folder(tmp_path / "file.txt", "alice/x")
    with pytest.raises(InputError, match="neither a diffusers pipeline folder"):
        hub.push_folder(tmp_path, "alice/x")
    folder = tiny_ddpm(tmp_path / "tiny")
    with pytest.raises(InputError, match="not a valid Hub repository id"):
        hub.push_folder(folder, "alice/bad name")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(InputError, match="no Hugging Face token found: run `hf auth login`"):
        hub.push_folder(folder, "alice/x")
    with pytest.raises(InputError, match="no Hugging Face token found"):
        hub.check_can_push(None, None, tmp_path / "run")  # what training checks before it starts
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match="HF_HUB_OFFLINE=1 is set"):
        hub.push_folder(folder, "alice/x", token=ALICE)
    with pytest.raises(InputError, match="HF_HUB_OFFLINE=1 is set"):
        hub.check_can_push("alice/x", ALICE)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"truncated")
    with pytest.raises(InputError, match="does not load .* nothing was uploaded"):
        hub.push_folder(folder, "alice/x", token=ALICE)
    assert hub.files_to_upload(folder) == ["model_index.json", "scheduler/scheduler_config.json",
                                           "unet/config.json", "unet/diffusion_pytorch_model.safetensors"]


def test_card_for_an_autoencoder_folder(tmp_path):
    from diffusers import AutoencoderKL

    folder = tmp_path / "vae"
    AutoencoderKL(in_channels=1, out_channels=1, block_out_channels=(8,), norm_num_groups=4, latent_channels=2,
                  sample_size=16).save_pretrained(folder)
    loaded = hub.load_folder(folder)
    staging = tmp_path / "staging"
    staging.mkdir()
    card = cards.card_for_folder(folder, loaded, staging, "alice/vae")
    text = (staging / "README.md").read_text()
    assert card.data.library_name == "diffusers" and "vae" in card.data.tags
    assert "from diffusers import AutoencoderKL" in text and 'AutoencoderKL.from_pretrained("alice/vae")' in text
    assert "model.encode(images)" in text and not (folder / "README.md").exists()


def test_card_for_a_text_to_image_folder(tmp_path):
    from tiny_pipelines import tiny_stable_diffusion

    folder = tiny_stable_diffusion(tmp_path / "tiny-sd")
    staging = tmp_path / "staging"
    staging.mkdir()
    card = cards.card_for_folder(folder, hub.load_folder(folder), staging, "alice/tiny-sd")
    text = (staging / "README.md").read_text()
    assert card.data.pipeline_tag == "text-to-image" and card.data.library_name == "diffusers"
    assert "stable-diffusion-diffusers" in card.data.tags
    assert 'StableDiffusionPipeline.from_pretrained("alice/tiny-sd")' in text
    assert "| `unet` | `UNet2DConditionModel` |" in text and "| `text_encoder` | `CLIPTextModel` |" in text
    assert not (folder / "README.md").exists()
