"""Opening a file the user named for writing (`trace -o`, `--record`), safely as root.

Root writing to a name in /tmp must not follow a symlink another user planted there, nor
clobber a file another user left in a shared (sticky or world-writable) directory. The
caller's own regular files are still overwritten, as `perf record -o` does.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat


def _shared_dir(path: str) -> bool:
    try:
        mode = os.stat(os.path.dirname(os.path.abspath(path))).st_mode
    except OSError:
        return True  # cannot tell: assume the worst
    return bool(mode & (stat.S_ISVTX | stat.S_IWOTH))


def open_output(path: str | os.PathLike[str], exclusive: bool = False) -> int:
    """A write fd for `path`, truncated if it is the caller's regular file.

    `exclusive`: a name schedtop chose (the TUI's T): the file must be new (0600).
    Raises OSError whose strerror is one line for the user."""
    name = os.fspath(path)
    if not name:
        raise OSError(errno.ENOENT, "no file named (an empty path)", name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    if exclusive:
        flags |= os.O_EXCL
    try:
        fd = os.open(name, flags, 0o600 if exclusive else 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "is a symbolic link: not followed (name the file it points to)",
                          name) from None
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            foreign = st.st_uid != os.geteuid() or st.st_nlink > 1  # a hard link to someone's file
            if foreign and _shared_dir(name):
                why = f"owned by uid {st.st_uid}" if st.st_uid != os.geteuid() else "a hard link"
                raise OSError(errno.EPERM, f"{why} in a shared directory: not overwritten "
                                           "(remove it first, or choose another name)", name)
            os.ftruncate(fd, 0)
        # A device or FIFO the user named: from here on, plain blocking writes.
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd
