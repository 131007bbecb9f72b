"""Push a pipeline or a model folder to the Hugging Face Hub: what ``sd-course push`` and ``--push_to_hub`` run.

    hf auth login                                        # once: stores a token with write access (or set HF_TOKEN)
    sd-course push pipelines/ddpm-mnist --repo_id YOUR_NAME/ddpm-mnist
    accelerate launch training/train_unconditional.py --config training/configs/mnist-quick.yaml \\
        --output_dir runs/quick --push_to_hub                # pushes runs/quick to YOUR_NAME/quick at the end

and anyone can then load it with ``DiffusionPipeline.from_pretrained("YOUR_NAME/ddpm-mnist")``.

What a push does, in this order (the cheap checks first, so that nothing is uploaded from a broken folder):

1. the folder must load: ``DiffusionPipeline.from_pretrained`` for a pipeline folder (``model_index.json``:
   ``DDPMPipeline``, ``StableDiffusionPipeline``, ...), the class named by ``config.json``'s ``_class_name`` for a
   single model's folder (``AutoencoderKL``, ``UNet2DModel``, ...);
2. it must have a model card ``README.md``; when it has none, one is rendered with huggingface_hub's ``ModelCard``
   from a template of ``model_cards/`` (``ddpm-unconditional.md`` with a fresh sample grid for a DDPM pipeline,
   ``text-to-image.md`` for Stable Diffusion, ``diffusers-model.md`` for a single model), with the metadata the Hub
   reads (``library_name: diffusers``, ``pipeline_tag``, tags);
3. ``create_repo(repo_id, exist_ok=True)`` and ``upload_folder`` send everything in one commit (huggingface_hub
   splits only folders of hundreds of files), without training checkpoints (``checkpoint-*``), epoch snapshots
   (``epoch-*``), ``logs/`` and hidden or temporary files.

The local folder is never written to: the upload is staged in a temporary folder of links to the files (plus the
rendered card), which is deleted afterwards, so an interrupted push leaves nothing half-written behind. Run the same
command again to finish it: files already on the Hub are recognised and not sent twice.

The token: ``HF_TOKEN`` or the ``hf auth login`` cache (huggingface_hub's ``get_token()``). A token typed on the
command line (``--token`` / ``--hub_token``) works but is visible to other users of the machine (``ps``) and stays
in the shell history, so it gets a warning, as in diffusers' examples. A token is never printed or logged; it is
blanked out of any error message and of the uploaded copies of text files that recorded it (a training_config.json
written with ``--hub_token``, say).
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import diffusers
from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from sd_course.core.checkpoints import ReadLock, replace_link
from sd_course.core.errors import InputError
from sd_course.publish.cards import REPO_ID_RE, _read_config, card_for_folder

logger = logging.getLogger(__name__)

# What is never uploaded (relative paths inside the folder, fnmatch patterns; a folder pattern covers its content).
IGNORE_PATTERNS = ("checkpoint-*", "epoch-*", "logs", ".*", "*.tmp", "*.lock", "__pycache__", "*.pyc")
TOKEN_WARNING = (
    "{flag} puts your Hub token on the command line, where other users of this machine can see it (ps) and where "
    "it stays in your shell history; due to this security risk of exposing your token, prefer `hf auth login` (or "
    "the HF_TOKEN environment variable) to authenticate with the Hub."
)


# ----------------------------------------------------------------------------------------------------------------
# 1. Token and repo name
# ----------------------------------------------------------------------------------------------------------------


def resolve_token(explicit: str | None = None, flag: str = "--token", warn: bool = True) -> str:
    """The token to push with: ``explicit`` (with a warning: it came from a command line), else ``HF_TOKEN`` or the
    ``hf auth login`` cache. InputError when there is none, before anything is sent."""
    if explicit:
        if warn:
            logger.warning(TOKEN_WARNING.format(flag=flag))
        return explicit
    token = get_token()
    if not token:
        raise InputError("no Hugging Face token found: run `hf auth login` (with a token that has write access, from "
                         "https://huggingface.co/settings/tokens) or set HF_TOKEN, then push again")
    return token


def check_repo_id(repo_id: str) -> str:
    """``user/name`` or ``name`` (then it goes to the token owner's namespace), with the Hub's allowed characters."""
    repo_id = str(repo_id).strip()
    if not REPO_ID_RE.match(repo_id) or ".." in repo_id or "--" in repo_id or repo_id.endswith((".", "-", ".git")):
        raise InputError(f"--repo_id {repo_id!r} is not a valid Hub repository id: use NAMESPACE/NAME (or NAME), "
                         "letters, digits, '.', '_' and '-' only, at most 96 characters each, e.g. "
                         "your-name/ddpm-mnist")
    return repo_id


def _check_online() -> None:
    if constants.HF_HUB_OFFLINE:
        raise InputError("HF_HUB_OFFLINE=1 is set, so nothing can be pushed: run the push with HF_HUB_OFFLINE=0 "
                         "(or unset it)")


# ----------------------------------------------------------------------------------------------------------------
# 2. What is in the folder: it must load
# ----------------------------------------------------------------------------------------------------------------


def load_folder(folder: str | Path):
    """Load the folder on the CPU the way its users will (``DiffusionPipeline.from_pretrained`` or the model's class):
    the proof that it is worth uploading. Returns the loaded object."""
    folder = Path(folder).expanduser()
    kind, class_name = folder_kind(folder)
    try:
        if kind == "pipeline":
            return diffusers.DiffusionPipeline.from_pretrained(str(folder))
        cls = getattr(diffusers, class_name, None)
        if cls is None or not hasattr(cls, "from_pretrained"):
            raise InputError(f"{folder / 'config.json'} names the class {class_name!r}, which diffusers does not "
                             "have; push a folder saved by a diffusers model")
        return cls.from_pretrained(str(folder))
    except InputError:
        raise
    except Exception as e:  # a missing weight file, a config that does not match the weights, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(f"{str(folder)!r} does not load ({type(e).__name__}: {first}); nothing was uploaded. "
                         "Fix or re-save the folder (e.g. re-run the export or the training) and push again") from e


# ----------------------------------------------------------------------------------------------------------------
# 4. Staging: a temporary folder of links, so the user's folder is never touched
# ----------------------------------------------------------------------------------------------------------------


def _ignored(relative: str) -> bool:
    parts = relative.split("/")
    return any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in IGNORE_PATTERNS)


def files_to_upload(folder: Path) -> list[str]:
    """Relative paths (POSIX) of the files a push sends, sorted."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and not _ignored(relative):
            found.append(relative)
    return found


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # same file system: no copy
    except OSError:
        try:
            os.symlink(src.resolve(), dst)
        except OSError:
            shutil.copy2(src, dst)


TEXT_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".md", ".txt", ".cfg", ".toml")


def redact_token(staging: Path, token: str) -> list[str]:
    """Blank ``token`` out of the staged text files (a training_config.json that recorded ``--hub_token``, say):
    the staged link is replaced by a redacted copy, the user's file stays as it was. Returns the files changed."""
    changed = []
    for path in sorted(staging.rglob("*")):
        if path.suffix.lower() not in TEXT_SUFFIXES or not path.is_file() or path.stat().st_size > 20 * 2**20:
            continue
        data = path.read_bytes()
        if token.encode() in data:
            replace_link(path)
            path.write_bytes(data.replace(token.encode(), b"***"))
            changed.append(path.relative_to(staging).as_posix())
    if changed:
        logger.warning(f"your Hub token was written in {changed}: the uploaded copies have it blanked out (***); "
                       "your local files still hold it")
    return changed


def stage(folder: Path, staging: Path) -> list[str]:
    files = files_to_upload(folder)
    if not files:
        raise InputError(f"{str(folder)!r} has nothing to upload")
    for relative in files:
        _link(folder / relative, staging / relative)
    return files


# ----------------------------------------------------------------------------------------------------------------
# 5. The push, and what its errors mean
# ----------------------------------------------------------------------------------------------------------------


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of a dropped or refused connection, for the HTTP client this huggingface_hub uses."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        found += [getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type)]
    return tuple(found)


def _server_says(error) -> str:
    response = getattr(error, "response", None)
    try:
        said = response.json().get("error") if response is not None else None
    except Exception:
        said = None
    said = said or (str(error).strip().splitlines() or [""])[0]
    return str(said).strip().rstrip(".")


@contextmanager
def hub_errors(repo_id: str, token: str | None, endpoint: str):
    """Turn huggingface_hub's and the HTTP client's exceptions into one-line InputErrors that say what to do."""
    untouched = "Your local folder was not changed."

    def fail(message: str, cause: BaseException):
        if token:
            message = message.replace(token, "***")
        raise InputError(message) from cause

    try:
        yield
    except InputError:
        raise
    except RepositoryNotFoundError as e:
        fail(f"the Hub at {endpoint} has no repository {repo_id!r} you can write to (or it refused your token): "
             f"check --repo_id, and that your token belongs to its owner. {untouched}", e)
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        said = _server_says(e)
        if status == 401:
            fail(f"the Hub rejected your token (401 Unauthorized: {said}): run `hf auth login` again with a valid "
                 f"token that has write access, or fix HF_TOKEN. {untouched}", e)
        if status == 403:
            fail(f"you may not write to {repo_id!r} (403 Forbidden: {said}): it belongs to another user or "
                 "organisation, or your token is read-only. Push to your own namespace (--repo_id YOUR_NAME/"
                 f"{repo_id.split('/')[-1]}) or use a token with write access to it. {untouched}", e)
        if status == 409:
            fail(f"the repository {repo_id!r} conflicts with an existing one (409 Conflict: {said}); choose "
                 f"another --repo_id. {untouched}", e)
        fail(f"the Hub answered {status} to the push of {repo_id!r} ({said}); try again later. {untouched}", e)
    except _transport_errors() as e:
        fail(f"the upload to {endpoint} was interrupted ({type(e).__name__}: {e}); nothing may have been "
             "committed. Run the same command again: files already on the Hub are not sent twice. "
             f"{untouched}", e)


def push_folder(folder: str | Path, repo_id: str | None = None, private: bool = False,
                commit_message: str | None = None, token: str | None = None, token_flag: str = "--token",
                show_progress: bool = True) -> str:
    """Check, card and upload ``folder`` to ``repo_id`` (default: the folder's name in your namespace) in one
    commit; returns the repository's URL.

        python -c "from sd_course.publish.hub import push_folder; print(push_folder('pipelines/ddpm-mnist', 'me/ddpm-mnist'))"
    """
    folder = Path(folder).expanduser()
    folder_kind(folder)  # the cheap checks first: a folder of a kind we know
    repo_id = check_repo_id(repo_id or folder.name)
    _check_online()
    token = resolve_token(token, token_flag)
    with ReadLock(folder, "push"):  # a run still training is not uploaded half-written
        return _push(folder, repo_id, private, commit_message, token, show_progress)


def _push(folder: Path, repo_id: str, private: bool, commit_message: str | None, token: str,
          show_progress: bool = True) -> str:
    loaded = load_folder(folder)
    endpoint = constants.ENDPOINT
    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="sd_course_push_") as tmp:
        staging = Path(tmp) / folder.name
        staging.mkdir()
        stage(folder, staging)
        if "/" not in repo_id:  # "name" alone goes to the token owner's namespace, as in diffusers' examples
            with hub_errors(repo_id, token, endpoint):
                repo_id = f"{api.whoami()['name']}/{repo_id}"
        if not (staging / "README.md").is_file():  # all local work is done before anything changes on the Hub
            card_for_folder(folder, loaded, staging, repo_id, show_progress)
        redact_token(staging, token)  # never upload the token, wherever a run wrote it down
        with hub_errors(repo_id, token, endpoint):
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, folder_path=staging,  # already filtered by IGNORE_PATTERNS
                              commit_message=commit_message or f"Upload {folder.name} with sd_course")
    return str(url)


def check_can_push(hub_model_id: str | None, hub_token: str | None, output_dir: Path | None = None) -> None:
    """The checks of a push that need no network (a valid repo id, not offline, a token at hand), for the start
    of a training run with ``--push_to_hub``: a missing login fails in a second, not after hours of training."""
    check_repo_id(hub_model_id or (Path(output_dir).name if output_dir else "model"))
    _check_online()
    resolve_token(hub_token, "--hub_token")


def push_training_output(output_dir: Path, hub_model_id: str | None, hub_token: str | None, private: bool) -> str:
    """What ``--push_to_hub`` runs at the end of training (the flags of diffusers' examples: ``--hub_model_id``,
    ``--hub_token``, ``--hub_private_repo``): the run's pipeline folder, its card and sample grids go to
    ``hub_model_id`` (default: the output folder's name in your namespace), without checkpoints, snapshots or
    logs. Returns the repository's URL."""
    return push_folder(output_dir, hub_model_id, private=private, commit_message="End of training",
                       token=hub_token, token_flag="--hub_token", show_progress=False)


def folder_kind(folder: str | Path) -> tuple[str, str]:
    """``("pipeline", "DDPMPipeline")`` for a pipeline folder, ``("model", "AutoencoderKL")`` for a single model's
    folder; InputError naming the fix for anything else."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise InputError(f"{str(folder)!r} does not exist; give the folder to push (a pipeline folder with "
                         "model_index.json, or a model folder with config.json)")
    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is a file, not a folder; give the folder that holds model_index.json "
                         "(a pipeline) or config.json (a single model)")
    if (folder / "model_index.json").is_file():
        return "pipeline", str(_read_config(folder / "model_index.json").get("_class_name"))
    if (folder / "config.json").is_file():
        class_name = _read_config(folder / "config.json").get("_class_name")
        if class_name:
            return "model", str(class_name)
        raise InputError(f"{folder / 'config.json'} has no _class_name: it is not a diffusers model folder "
                         "(save the model with diffusers' save_pretrained)")
    sub = sorted(p.parent.name for p in folder.glob("*/model_index.json"))
    hint = f" Its sub-folders {sub} are pipelines: push one of them." if sub else ""
    raise InputError(f"{str(folder)!r} is neither a diffusers pipeline folder (model_index.json) nor a model folder "
                     f"(config.json).{hint} Push the folder that training or `sd-course export` wrote")
