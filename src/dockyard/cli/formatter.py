"""docker/cli's ``formatter`` package: ``--format`` handling (``table ...``,
``json``, Go templates), the tab-aligned table with its header row, and the
per-row contexts for containers, images and history."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dockyard import units
from dockyard.cli.tabwriter import tabwrite
from dockyard.cli.template import BUILTINS, HEADER_FUNCS, TemplateError, parse
from dockyard.gofmt import MISSING, go_quote

TABLE = "table"


class FormatError(TemplateError):
    """A ``--format`` template failed to parse or run; text as docker's."""


def truncate_id(ident: str) -> str:
    """stringid.TruncateID: drop ``sha256:``, keep 12 characters."""
    if ":" in ident:
        ident = ident.split(":", 1)[1]
    return ident[:12]


def ellipsis(text: str, width: int) -> str:
    """formatter.Ellipsis for single-width runes."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return text[0]
    return text[: width - 1] + "…"


def go_time(ts: float) -> str:
    """``time.Unix(ts, 0).String()``: "2024-01-02 15:04:05 +0000 UTC"."""
    moment = _dt.datetime.fromtimestamp(ts).astimezone()
    zone = moment.strftime("%Z")
    return moment.strftime("%Y-%m-%d %H:%M:%S %z ") + zone


def since(ts: float, now: float | None = None) -> str:
    now = time.time() if now is None else now
    return units.human_duration(now - ts) + " ago"


def familiar_name(repo: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if repo.startswith(prefix) and "/" not in repo[len("docker.io/library/") :]:
            return repo[len(prefix) :]
        if repo.startswith(prefix):
            return repo[len(prefix) :]
    return repo


class Header:
    """The header row's data: ``.Field`` gives the column title."""

    def __init__(self, titles: Mapping[str, str]) -> None:
        self._titles = dict(titles)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name == "Label":
            return lambda key: key  # docker prints the label's name as title
        return self._titles.get(name, MISSING)


class Context:
    """A row: public methods without arguments are its JSON fields."""

    HEADERS: Mapping[str, str] = {}
    JSON_FIELDS: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name)() for name in sorted(self.JSON_FIELDS)}


def render(fmt: str, rows: Iterable[Any], headers: Mapping[str, str]) -> str:
    """Format rows like formatter.Context.Write: a table (header + tabwriter),
    ``json`` (one JSON object a line), or a raw template."""
    if fmt == "json":
        fmt = "{{json .}}"
    is_table = fmt.startswith(TABLE)
    body = fmt[len(TABLE) :] if is_table else fmt
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    try:
        tmpl = parse(body, BUILTINS)
    except TemplateError as exc:
        raise FormatError(f"template parsing error: {exc.message}")
    out: list[str] = []
    for row in rows:
        try:
            out.append(tmpl.execute(row) + "\n")
        except TemplateError as exc:
            raise FormatError(f"template: {exc.message}")
    if not is_table:
        return "".join(out)
    try:
        header = tmpl.execute(Header(headers), funcs=HEADER_FUNCS)
    except TemplateError:
        header = ""
    return tabwrite(header + "\n" + "".join(out))


# --- containers -------------------------------------------------------------


def _ports(ports: list[Mapping[str, Any]] | None) -> str:
    """formatter.DisplayablePorts, without range folding."""
    seen: list[str] = []
    for p in sorted(ports or [], key=lambda p: (p.get("Type", ""), p.get("PrivatePort", 0))):
        proto = p.get("Type", "tcp")
        if p.get("PublicPort"):
            ip = p.get("IP", "")
            host = f"[{ip}]" if ":" in ip else ip
            text = f"{host}:{p['PublicPort']}->{p['PrivatePort']}/{proto}"
        else:
            text = f"{p.get('PrivatePort')}/{proto}"
        if text not in seen:
            seen.append(text)
    return ", ".join(seen)


class ContainerContext(Context):
    GO_TYPE = "*formatter.ContainerContext"
    HEADERS = {
        "ID": "CONTAINER ID",
        "Names": "NAMES",
        "Image": "IMAGE",
        "Command": "COMMAND",
        "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED",
        "Ports": "PORTS",
        "State": "STATE",
        "Status": "STATUS",
        "Size": "SIZE",
        "Labels": "LABELS",
        "Mounts": "MOUNTS",
        "LocalVolumes": "LOCAL VOLUMES",
        "Networks": "NETWORKS",
        "Platform": "PLATFORM",
    }
    JSON_FIELDS = (
        "Command",
        "CreatedAt",
        "ID",
        "Image",
        "Labels",
        "LocalVolumes",
        "Mounts",
        "Names",
        "Networks",
        "Ports",
        "RunningFor",
        "Size",
        "State",
        "Status",
    )

    def __init__(self, c: Mapping[str, Any], *, trunc: bool = True, now: float | None = None):
        self.c = c
        self.trunc = trunc
        self.now = now

    def ID(self) -> str:
        ident = self.c.get("Id", "")
        return truncate_id(ident) if self.trunc else ident

    def Names(self) -> str:
        names = [n[1:] if n.startswith("/") else n for n in self.c.get("Names") or []]
        if self.trunc:
            for name in names:
                if "/" not in name:
                    names = [name]
                    break
        return ",".join(names)

    def Image(self) -> str:
        image = self.c.get("Image") or ""
        if not image:
            return "<no image>"
        if self.trunc:
            short = truncate_id(self.c.get("ImageID") or "")
            if short and short == truncate_id(image):
                return short
            if "@" in image:
                image = image.split("@", 1)[0]
            return familiar_name(image)
        return image

    def Command(self) -> str:
        command = self.c.get("Command") or ""
        if self.trunc:
            command = ellipsis(command, 20)
        return go_quote(command)

    def CreatedAt(self) -> str:
        return go_time(self.c.get("Created", 0))

    def RunningFor(self) -> str:
        return since(self.c.get("Created", 0), self.now)

    def Ports(self) -> str:
        return _ports(self.c.get("Ports"))

    def State(self) -> str:
        return self.c.get("State") or ""

    def Status(self) -> str:
        return self.c.get("Status") or ""

    def Size(self) -> str:
        srw = units.human_size_with_precision(self.c.get("SizeRw") or 0, 3)
        root = self.c.get("SizeRootFs") or 0
        if root > 0:
            return f"{srw} (virtual {units.human_size_with_precision(root, 3)})"
        return srw

    def Labels(self) -> str:
        labels = self.c.get("Labels") or {}
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

    def Label(self, name: str) -> str:
        return (self.c.get("Labels") or {}).get(name, "")

    def Mounts(self) -> str:
        names = []
        for m in self.c.get("Mounts") or []:
            name = m.get("Name") or m.get("Source") or ""
            names.append(ellipsis(name, 15) if self.trunc else name)
        return ",".join(names)

    def LocalVolumes(self) -> str:
        return str(sum(1 for m in self.c.get("Mounts") or [] if m.get("Driver") == "local"))

    def Networks(self) -> str:
        nets = ((self.c.get("NetworkSettings") or {}).get("Networks")) or {}
        return ",".join(sorted(nets))

    def Platform(self) -> Any:
        return None

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data["Platform"] = None
        return dict(sorted(data.items()))


# --- images -------------------------------------------------------------------


class ImageContext(Context):
    GO_TYPE = "*formatter.ImageContext"
    HEADERS = {
        "ID": "IMAGE ID",
        "Repository": "REPOSITORY",
        "Tag": "TAG",
        "Digest": "DIGEST",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "Size": "SIZE",
        "Containers": "CONTAINERS",
        "VirtualSize": "VIRTUAL SIZE",
        "SharedSize": "SHARED SIZE",
        "UniqueSize": "UNIQUE SIZE",
    }
    JSON_FIELDS = (
        "Containers",
        "CreatedAt",
        "CreatedSince",
        "Digest",
        "ID",
        "Repository",
        "SharedSize",
        "Size",
        "Tag",
        "UniqueSize",
        "VirtualSize",
    )

    def __init__(self, image: Mapping[str, Any], repo: str, tag: str, digest: str, *,
                 trunc: bool = True, now: float | None = None) -> None:  # fmt: skip
        self.i = image
        self.repo, self.tag, self.digest = repo, tag, digest
        self.trunc = trunc
        self.now = now

    def ID(self) -> str:
        ident = self.i.get("Id", "")
        return truncate_id(ident) if self.trunc else ident

    def Repository(self) -> str:
        return self.repo

    def Tag(self) -> str:
        return self.tag

    def Digest(self) -> str:
        return self.digest

    def CreatedSince(self) -> str:
        return since(self.i.get("Created", 0), self.now)

    def CreatedAt(self) -> str:
        return go_time(self.i.get("Created", 0))

    def Size(self) -> str:
        return units.human_size_with_precision(self.i.get("Size") or 0, 3)

    def Containers(self) -> str:
        n = self.i.get("Containers", -1)
        return "N/A" if n is None or n == -1 else str(n)

    def VirtualSize(self) -> str:
        return units.human_size(self.i.get("VirtualSize", self.i.get("Size")) or 0)

    def SharedSize(self) -> str:
        n = self.i.get("SharedSize", -1)
        return "N/A" if n is None or n == -1 else units.human_size(n)

    def UniqueSize(self) -> str:
        shared = self.i.get("SharedSize", -1)
        if shared is None or shared == -1:
            return "N/A"
        return units.human_size((self.i.get("Size") or 0) - shared)


def image_rows(images: Iterable[Mapping[str, Any]], *, digests: bool, trunc: bool,
               now: float | None = None) -> list[ImageContext]:  # fmt: skip
    """One row per repository:tag (and per digest with ``--digests``), as
    formatter.imageFormat splits them."""
    rows: list[ImageContext] = []
    for img in images:
        tags: dict[str, list[str]] = {}
        dgsts: dict[str, list[str]] = {}
        for ref in img.get("RepoTags") or []:
            if ref == "<none>:<none>" or "@" in ref:
                continue
            repo, _, tag = ref.rpartition(":")
            if not repo or "/" in tag:
                continue
            tags.setdefault(familiar_name(repo), []).append(tag)
        for ref in img.get("RepoDigests") or []:
            repo, _, dgst = ref.partition("@")
            if repo and dgst and repo != "<none>":
                dgsts.setdefault(familiar_name(repo), []).append(dgst)
        made: list[ImageContext] = []
        for repo, repo_tags in tags.items():
            repo_digests = dgsts.pop(repo, []) if digests else (dgsts.pop(repo, None) and [])
            for tag in repo_tags:
                for dgst in repo_digests or ["<none>"]:
                    made.append(ImageContext(img, repo, tag, dgst, trunc=trunc, now=now))
        for repo, repo_digests in dgsts.items():
            if digests:
                for dgst in repo_digests:
                    made.append(ImageContext(img, repo, "<none>", dgst, trunc=trunc, now=now))
            else:
                made.append(ImageContext(img, repo, "<none>", "", trunc=trunc, now=now))
        if not made:
            made.append(ImageContext(img, "<none>", "<none>", "<none>", trunc=trunc, now=now))
        rows.extend(made)
    return rows


# --- history -------------------------------------------------------------------


class HistoryContext(Context):
    GO_TYPE = "*image.historyContext"
    HEADERS = {
        "ID": "IMAGE",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY",
        "Size": "SIZE",
        "Comment": "COMMENT",
    }
    JSON_FIELDS = ("Comment", "CreatedAt", "CreatedBy", "CreatedSince", "ID", "Size")

    def __init__(self, h: Mapping[str, Any], *, trunc: bool, human: bool,
                 now: float | None = None) -> None:  # fmt: skip
        self.h = h
        self.trunc = trunc
        self.human = human
        self.now = now

    def ID(self) -> str:
        ident = self.h.get("Id", "")
        return truncate_id(ident) if self.trunc else ident

    def CreatedSince(self) -> str:
        if not self.human:
            return self.CreatedAt()
        return since(self.h.get("Created", 0), self.now)

    def CreatedAt(self) -> str:
        ts = self.h.get("Created", 0)
        if self.human:
            return go_time(ts)
        moment = _dt.datetime.fromtimestamp(ts).astimezone()
        text = moment.isoformat(timespec="seconds")
        return text.replace("+00:00", "Z")

    def CreatedBy(self) -> str:
        text = (self.h.get("CreatedBy") or "").replace("\t", " ")
        return ellipsis(text, 45) if self.trunc else text

    def Size(self) -> str:
        size = self.h.get("Size") or 0
        return units.human_size_with_precision(size, 3) if self.human else str(size)

    def Comment(self) -> str:
        return self.h.get("Comment") or ""


RowFactory = Callable[[Mapping[str, Any]], Context]
