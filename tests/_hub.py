"""A tiny Hugging Face Hub on 127.0.0.1 for the download tests (owned by the weights tests).

It answers ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}`` the way the Hub does for
plain files (``X-Repo-Commit``, ``ETag``, ``Content-Length``, ``Range``) and 404s with the Hub's
``X-Error-Code`` header, and can misbehave on purpose: corrupt bytes, a dropped connection, a
short body, no answer at all (``hang``), or headers and then a body that never comes
(``stall``). Every request is recorded so tests can count them.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from napari_clearnet.core.model import ClearNet, ClearNetConfig
from napari_clearnet.weights import save_weights

COMMIT = "0123456789abcdef0123456789abcdef01234567"
#: the model the ``hub`` fixture serves and registers as ``tiny``
HUB_REPO = "clearnet-tests/tiny"
HUB_FILE = "tiny.safetensors"
MODES = ("ok", "corrupt", "drop_once", "short", "hang", "stall")


@dataclass
class HubFile:
    data: bytes
    mode: str = "ok"
    served: int = 0  # GET responses started, for drop_once


@dataclass
class FakeHub:
    """Files by (repo_id, filename); ``requests`` logs (method, path, range header)."""

    files: dict[tuple[str, str], HubFile] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def add(self, repo_id: str, filename: str, data: bytes, mode: str = "ok") -> None:
        assert mode in MODES, mode
        self.files[(repo_id, filename)] = HubFile(data, mode)

    def count(self, method: str | None = None) -> int:
        """File requests (huggingface_hub may also GET /api/... on its own, e.g. agent detection)."""
        return sum(1 for m, p, _ in self.requests if method in (None, m) and "/resolve/" in p)


_PATH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _not_found(self, code: str, commit: bool) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", code)
            if commit:
                self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, body: bool) -> None:
            rng = self.headers.get("Range")
            hub.requests.append((self.command, self.path, rng))
            m = _PATH.match(self.path.split("?")[0])
            if not m or not any(r == m["repo"] for r, _ in hub.files):
                return self._not_found("RepoNotFound", commit=False)
            if m["rev"] not in ("main", COMMIT):
                return self._not_found("RevisionNotFound", commit=False)
            f = hub.files.get((m["repo"], m["file"]))
            if f is None:
                return self._not_found("EntryNotFound", commit=True)
            if f.mode == "hang":
                hub.release.wait(30)
                return None
            data = f.data
            if f.mode == "corrupt":
                data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
            start = 0
            if rng and (r := re.fullmatch(r"bytes=(\d+)-", rng)):
                start = int(r[1])
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Accept-Ranges", "bytes")
            length = len(data) - start
            if body and f.mode == "short":
                length = len(data) // 2
            self.send_header("Content-Length", str(length))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return None
            if f.mode == "stall":  # the headers came; the body never does
                self.wfile.flush()
                hub.release.wait(30)
                return None
            f.served += 1
            payload = data[start:start + length]
            if f.mode == "drop_once" and f.served == 1:
                self.wfile.write(payload[: len(payload) // 3])
                self.wfile.flush()
                self.close_connection = True
                return None
            self.wfile.write(payload)
            return None

    return Handler


class HubServer:
    """Context manager: a :class:`FakeHub` served on 127.0.0.1, port chosen by the OS."""

    def __init__(self) -> None:
        self.hub = FakeHub()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.hub))
        self._server.daemon_threads = True
        self.hub.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self.hub

    def __exit__(self, *exc: object) -> None:
        self.hub.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def tiny_weights(path: Path, widths: tuple[int, ...] = (4, 8)) -> tuple[bytes, str]:
    """A small real ClearNet weights file: (its bytes, its sha256)."""
    sha = save_weights(ClearNet(ClearNetConfig(widths=widths)), path)
    return path.read_bytes(), sha


def registry_entry(name: str, repo_id: str, filename: str, data: bytes, **extra: object) -> dict:
    """A registry record for ``data`` as it would be published on the Hub."""
    return {
        "name": name, "repo_id": repo_id, "filename": filename, "revision": "main",
        "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "bundled": False,
        "license": "BSD-3-Clause", "description": f"test model {name}", **extra,
    }


def use_hub(monkeypatch: Any, url: str, home: Path) -> None:
    """Point huggingface_hub at ``url`` with its cache under ``home``, online, as HF_ENDPOINT and
    HF_HOME would in a fresh process (they are read when huggingface_hub is imported, so this
    process sets its constants; subprocesses get the variables)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", url)
    template = url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(home))
    for var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
