"""Code mrunner sends to the login node with each call (the helper, the pull's sender), kept compiled there.

mrunner installs nothing on a cluster: every call sends the module's source, compressed, ahead of its own input,
so the cluster always runs the version of the plugin that calls it. Compiling that source took about a third
of a short call (`status`), so the launcher keeps the compiled code in the user's cache folder on the cluster
(``$XDG_CACHE_HOME/mrunner``, else ``~/.cache/mrunner``: mrunner's own code, not experiment data, and the helper
calls do not all know the context's storage folder), one file per module version and Python:
``NAME-DIGEST-CACHETAG-HEXVERSION.bin``, the digest being the source's. A later call whose source has that digest
runs the stored code and skips the source it was sent; a new plugin version has a new digest, so a stored file is
never stale. The file is written under a temporary name and renamed (concurrent commands see a whole file or
none), checked by a CRC on load, and used only from a folder the user alone can write; anything missing,
unreadable or damaged falls back to compiling the source that came with the call, which also writes the file
again. Writing a new version removes those not written for ``KEEP_DAYS``.

The launcher is ``python3 -S -c LAUNCHER NAME-DIGEST ARGS...``; it takes its argument off ``sys.argv``, so the
module sees ``ARGS`` as before, and runs it as ``__main__``.
"""

from __future__ import annotations

import functools
import hashlib
import shlex
import zlib
from dataclasses import dataclass
from pathlib import Path

KEEP_DAYS = 30

LAUNCHER = """\
import marshal,os,sys,zlib
b=sys.stdin.buffer;n=int(b.readline());k=sys.argv.pop(1)
f=os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),'mrunner')
p=os.path.join(f,'%s-%s-%x.bin'%(k,sys.implementation.cache_tag,sys.hexversion))
c=None
try:
 s=os.stat(f)
 t=s.st_uid==os.getuid() and not s.st_mode&0o22
 if t:
  with open(p,'rb') as r:h=r.read()
  if zlib.crc32(h[4:])==int.from_bytes(h[:4],'big'):c=marshal.loads(h[4:])
except Exception:c=None
if c is None:
 c=compile(zlib.decompress(b.read(n)),k.rpartition('-')[0],'exec');w=p+'.%d.tmp'%os.getpid()
 try:
  os.makedirs(f,0o700,exist_ok=True);s=os.stat(f)
  if s.st_uid==os.getuid() and not s.st_mode&0o22:
   m=marshal.dumps(c)
   with open(w,'wb') as r:r.write(zlib.crc32(m).to_bytes(4,'big')+m)
   os.replace(w,p);import time;o=time.time()-KEEP_SECONDS
   for e in os.scandir(f):
    if e.name.endswith('.bin') and e.name!=os.path.basename(p) and e.stat().st_mtime<o:os.unlink(e.path)
 except OSError:
  try:os.unlink(w)
  except OSError:pass
else:b.read(n)
exec(c)
""".replace("KEEP_SECONDS", str(KEEP_DAYS * 86400))


@dataclass(frozen=True)
class Shipped:
    """A module as the launcher receives it: ``key`` (its name and digest, the launcher's argument) and
    ``head`` (what stdin begins with: the compressed source's length, a newline, the compressed source)."""

    key: str
    head: bytes

    def command(self, python: str, *args: str) -> str:
        """The shell line that runs the module on the login node with ``args``."""
        return shlex.join([python, "-S", "-c", LAUNCHER, self.key, *args])


def of_source(name: str, source: bytes) -> Shipped:
    blob = zlib.compress(source, 9)
    digest = hashlib.sha256(source).hexdigest()[:20]
    return Shipped(f"{name}-{digest}", str(len(blob)).encode() + b"\n" + blob)


@functools.cache
def of_file(name: str, path: str) -> Shipped:
    """``path``'s source shipped as ``name`` (read and compressed once per process)."""
    return of_source(name, Path(path).read_bytes())
