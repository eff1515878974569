"""Publish the built dataset folder as a Hugging Face Hub dataset repo (`latbench data push`).

The folder's README.md is the dataset card the Hub shows; it is checked offline first
(:func:`check_card`: what can be checked without the Hub), so a malformed card is never uploaded.
"""

from __future__ import annotations

import re
from pathlib import Path

from latbench.data import card, store
from latbench.errors import DataError, LatbenchError

#: Never upload hidden/temp files (build scratch, editor swap files), at any depth.
IGNORE_PATTERNS = [".*", "*/.*"]
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,94}[A-Za-z0-9]?/[A-Za-z0-9][A-Za-z0-9._-]{0,94}[A-Za-z0-9]?")


def check_repo_id(repo_id: str) -> None:
    """Reject a malformed id locally: the Hub's own error would come after a network round-trip."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise LatbenchError(f"bad repo id {repo_id!r}: expected ORG/NAME (e.g. my-org/latbench)")
    try:
        from huggingface_hub.utils import validate_repo_id
    except ImportError:  # very old huggingface_hub: fall back to the same rules
        validate_repo_id = None
    if validate_repo_id is not None:
        try:
            validate_repo_id(repo_id)
        except Exception as e:  # HFValidationError (a ValueError)
            raise LatbenchError(f"bad repo id {repo_id!r}: {_one_line(e)}") from None
    elif not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        raise LatbenchError(f"bad repo id {repo_id!r}: use letters, digits, '-', '_', '.' in ORG/NAME")


def check_card(folder: Path) -> None:
    """Refuse to publish a folder whose dataset card fails the offline checks (:func:`latbench.data.card.check`)."""
    readme = Path(folder) / "README.md"
    if not readme.is_file():
        raise DataError(f"{readme}: no dataset card; run `latbench data build`")
    problems = card.check(readme.read_text(encoding="utf-8"), folder)
    if problems:
        raise DataError(
            f"{readme}: the dataset card fails validation ({'; '.join(problems[:3])}"
            f"{f'; and {len(problems) - 3} more' if len(problems) > 3 else ''}); run `latbench data build` to rewrite it"
        )


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    first = text.splitlines()[0].strip() if text else ""
    return first or type(e).__name__


def push(repo_id: str, *, private: bool = False, token: str | None = None, api=None) -> str:
    """Create (if needed) the dataset repo and upload the built folder; return the repo URL."""
    check_repo_id(repo_id)
    info = store.info()  # DataError if not built: fail before touching the network
    folder = store.root()
    check_card(folder)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="dataset",
            commit_message=f"latbench dataset {info['dataset_version']}",
            ignore_patterns=IGNORE_PATTERNS,
        )
    except LatbenchError:
        raise
    except Exception as e:  # HfHubHTTPError, network OSError, auth errors, ...: all one line for the CLI
        raise LatbenchError(f"push to {repo_id} failed: {type(e).__name__}: {_one_line(e)}") from e
    if isinstance(url, str) and url:
        return str(url)
    endpoint = getattr(api, "endpoint", None) or "https://huggingface.co"
    return f"{endpoint.rstrip('/')}/datasets/{repo_id}"
