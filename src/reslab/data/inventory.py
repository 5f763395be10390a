"""Walking a data folder: every entry under it becomes a candidate file or a skip line with a reason, never an error.

Link policy (the filter and `reslab predict` share it):

- A link is followed only when what it points to lies inside the folder being read (for the filter: data/, plus the
  project's DVC cache, which `dvc checkout` links into when `cache.type` is `symlink`). A link that points
  elsewhere is reported and not followed: nothing outside the folder is read because a link points there.
- Each real file and folder is counted once. A file or folder reached both directly and through a link is read
  under its own path, and the link is reported as a duplicate; reached only through links, it is read under the
  first such link in path order (and belongs to that link's class). Links into the DVC cache are the exception:
  DVC links identical files to one cache object, so each such link counts as a file of its own.
- A link that loops, or points to a folder that contains it, is a "link loop"; one whose target is missing is a
  "dangling link". Neither stops the walk.
- Files in sub-folders of a class folder belong to the class (as torchvision's ImageFolder reads them).

Special files (FIFOs, sockets, devices) are reported and never opened: opening a FIFO for reading blocks. Names
that are not valid UTF-8 are reported (with the odd bytes escaped) and not read, since the manifest, a UTF-8 CSV,
could not name them. Hidden entries (a name starting with ".") are reported and not read; a hidden folder's contents
are not listed. The walk keeps its own stack, so a tree of any depth or width is read without recursion.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

# Skip reasons found while walking (the filter adds the ones it finds while decoding; see filtering.SKIP_REASONS).
HIDDEN = "hidden"
NAME_NOT_UTF8 = "name not UTF-8"
NOT_IN_CLASS_FOLDER = "not in a class folder"
LINK_OUTSIDE = "link outside the data folder"
LINK_LOOP = "link loop"
DANGLING_LINK = "dangling link"
DUPLICATE_LINK = "duplicate via a link"
SPECIAL_FILE = "special file"
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Candidate:
    """A file that may become a sample: `path` as it is named under the folder, `real` the file it reads."""

    path: str
    label: str
    real: str


@dataclass
class Inventory:
    """What a walk found: candidate files per class, skipped entries, and how many folders were read."""

    classes: dict[str, list[Candidate]] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason", "detail"}
    n_folders_read: int = 0


def shown(path: str) -> str:
    """A path fit for a UTF-8 report: bytes that are not UTF-8 appear as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def special_kind(mode: int) -> str:
    """'FIFO', 'socket', ... for a file mode that is not a regular file."""
    for test, kind in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return kind
    return f"file type {stat.S_IFMT(mode):o}"


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


class _Walk:
    """One walk of a folder tree; `classes=True` reads its top-level folders as classes (ImageFolder)."""

    def __init__(self, top: str, classes: bool, link_roots: tuple[str, ...] = ()):
        self.top = top
        self.top_real = os.path.realpath(top)
        self.image_folder = classes
        self.link_roots = tuple(os.path.realpath(r) for r in link_roots)
        self.inventory = Inventory()
        self.counted: dict[str, str] = {}  # real file -> the path it is counted under
        self.read_dirs: dict[str, str] = {}  # real folder -> the path it was read under
        self.links: list[tuple[str, str | None, str]] = []  # (path, label, real folder holding the link)

    def skip(self, path: str, reason: str, detail: str = "") -> None:
        self.inventory.skipped.append({"path": shown(path), "reason": reason, "detail": detail})

    def add_file(self, path: str, real: str, label: str | None, dedupe: bool = True) -> None:
        if label is None:
            self.skip(path, NOT_IN_CLASS_FOLDER)
        elif dedupe and real in self.counted:
            self.skip(path, DUPLICATE_LINK, f"the same file as {shown(self.counted[real])}")
        else:
            if dedupe:
                self.counted[real] = path
            self.inventory.classes.setdefault(label, []).append(Candidate(path, label, real))

    def read(self, path: str, real: str, label: str | None) -> None:
        """Read the folder `path` (really `real`) and everything under it; links are queued for `follow_links`."""
        stack = [(path, real, label)]
        while stack:
            path, real, label = stack.pop()
            if real in self.read_dirs:
                self.skip(path, DUPLICATE_LINK, f"the same folder as {shown(self.read_dirs[real])}")
                continue
            try:
                with os.scandir(path) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                if path == self.top:
                    raise
                self.skip(path, UNREADABLE, f"folder: {e.strerror or e}")
                continue
            self.read_dirs[real] = path
            if path != self.top:
                self.inventory.n_folders_read += 1
            if self.image_folder and label is not None:
                self.inventory.classes.setdefault(label, [])
            folders = []
            for entry in entries:
                sub, sub_real = os.path.join(path, entry.name), os.path.join(real, entry.name)
                if entry.name.startswith("."):
                    self.skip(sub, HIDDEN, "folder; not read" if _is_real_dir(entry) else "")
                    continue
                try:
                    entry.name.encode("utf-8")
                except UnicodeEncodeError:
                    self.skip(sub, NAME_NOT_UTF8, "rename it to read it")
                    continue
                sub_label = entry.name if self.image_folder and label is None else label
                try:
                    if entry.is_symlink():
                        self.links.append((sub, label, real))
                    elif entry.is_dir(follow_symlinks=False):
                        folders.append((sub, sub_real, sub_label))
                    elif entry.is_file(follow_symlinks=False):
                        self.add_file(sub, sub_real, label if self.image_folder else "")
                    else:
                        self.skip(sub, SPECIAL_FILE, special_kind(entry.stat(follow_symlinks=False).st_mode))
                except OSError as e:
                    self.skip(sub, UNREADABLE, e.strerror or str(e))
            stack.extend(reversed(folders))  # depth first, in name order, as os.walk lists them

    def follow_links(self) -> None:
        """Resolve queued links in the order found; following one to a folder may queue more."""
        i = 0
        while i < len(self.links):
            path, label, holder_real = self.links[i]
            i += 1
            target = os.path.realpath(path)  # a loop comes back unresolved and fails the stat below
            in_cache = any(_within(target, r) for r in self.link_roots)
            if not (_within(target, self.top_real) or in_cache):
                self.skip(path, LINK_OUTSIDE, f"points to {shown(_readlink(path))}; not followed")
                continue
            try:
                mode = os.stat(target).st_mode
            except OSError as e:
                reason = {errno.ELOOP: LINK_LOOP, errno.ENOENT: DANGLING_LINK, errno.ENOTDIR: DANGLING_LINK}
                self.skip(path, reason.get(e.errno, UNREADABLE), f"points to {shown(_readlink(path))}")
                continue
            own_label = os.path.basename(path) if self.image_folder and label is None else label
            if stat.S_ISREG(mode):
                self.add_file(path, target, label if self.image_folder else "", dedupe=not in_cache)
            elif stat.S_ISDIR(mode) and not in_cache:
                if _within(holder_real, target):
                    self.skip(path, LINK_LOOP, f"points to {shown(_readlink(path))}, a folder that contains it")
                else:
                    self.read(path, target, own_label)
            elif stat.S_ISDIR(mode):
                self.skip(path, LINK_OUTSIDE, "a folder in the DVC cache; not followed")
            else:
                self.skip(path, SPECIAL_FILE, f"link to a {special_kind(mode)}; not opened")


def _is_real_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def take_inventory(data_dir: str, link_roots: tuple[str, ...] = ()) -> Inventory:
    """Walk an ImageFolder tree: top-level folders are classes; every entry is a candidate or a skip line.

    Args:
        data_dir: the folder to read; it must exist and be readable (OSError otherwise).
        link_roots: folders besides data_dir that links may point into (the DVC cache).
    """
    walk = _Walk(data_dir, classes=True, link_roots=link_roots)
    walk.read(data_dir, walk.top_real, None)
    walk.follow_links()
    for files in walk.inventory.classes.values():
        files.sort(key=lambda c: c.path)
    return walk.inventory


def list_files(folder: str) -> Inventory:
    """Every file under `folder` (class ""), following links only within it; the rest as skip lines."""
    walk = _Walk(folder, classes=False)
    walk.read(folder, walk.top_real, "")
    walk.follow_links()
    return walk.inventory
