"""Files that appear complete or not at all, even with two writers of the same name.

Every writer gets its own temporary file beside the target (``.<name>.<random>.partial``, created exclusively by
``tempfile.mkstemp``), so two runs writing the same file never truncate each other's half. When the file is
complete it is moved into place: replacing what is there (``overwrite=True``), or only if nothing is there yet
(``overwrite=False``: a hard link, which the kernel creates atomically or refuses), so a file written by another
run in the meantime is never replaced. On any error the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would have given the file (mkstemp makes it 0600)
PARTIAL_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool, suffix: str = PARTIAL_SUFFIX):
    """Yield a unique temporary path beside ``path``; write the whole file there; on leaving the block it
    becomes ``path``. ``overwrite=False`` raises FileExistsError naming ``path`` if it exists by then.
    ``suffix``: the temporary name's ending (a writer that appends its own extension needs it, e.g. ``.npz``)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, _FILE_MODE)
        yield tmp
        if overwrite:
            os.replace(tmp, path)
        else:
            _create_if_absent(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _create_if_absent(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path}: already exists (another run wrote it meanwhile); not overwritten") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # a filesystem without hard links: exclusive create of the name, then the content over it
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _FILE_MODE))
        except FileExistsError:
            raise FileExistsError(f"{path}: already exists (another run wrote it meanwhile); not overwritten") \
                from None
        os.replace(tmp, path)
