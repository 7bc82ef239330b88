"""REQUIREMENTS for RG.PYEXECUTE (gears-spec 1.1 and 3.3).

A requirement the interpreter already satisfies is used as it is. Otherwise it is installed with
`python -m pip install --target <reqdir>/<spec>_<10 hex>` (the real server uses
`<venv>/<spec>_<10 random hex>` and pip wheel + pip install) and that directory joins sys.path.
"""
import glob
import os
import re
import subprocess
import sys
import threading

DOWNLOAD_FAILED = 'Could not satisfy requirements (look at redis log file for more information)'
DIR_FAILED = 'Could not satisfy requirements, look at the log file for more information.'

_lock = threading.Lock()
_installed = {}  # spec -> reqinfo


def _requirement(spec):
    try:
        from pip._vendor.packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - pip without vendored packaging
        try:
            from packaging.requirements import Requirement
        except ImportError:
            Requirement = None
    if Requirement is None:
        m = re.match(r'^\s*([A-Za-z0-9_.\-]+)', spec)
        return (m.group(1) if m else spec), None
    try:
        r = Requirement(spec)
    except Exception:
        return None, None
    return r.name, r.specifier


def _satisfied(spec):
    """Returns the dist location when the interpreter already satisfies spec, else None."""
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover
        return None
    name, specifier = _requirement(spec)
    if not name:
        return None
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    version = dist.version
    if specifier is not None and len(specifier) and not specifier.contains(version, prereleases=True):
        return None
    try:
        return str(dist.locate_file(''))
    except Exception:
        return ''


def _wheels(target):
    out = []
    for d in sorted(glob.glob(os.path.join(target, '*.dist-info'))):
        base = os.path.basename(d)[:-len('.dist-info')]
        out.append('%s-py3-none-any.whl' % base)
    return out


def _safe(spec):
    return re.sub(r'[^A-Za-z0-9_.=<>!~,\-]', '_', spec)


def _forget_older(spec, target):
    # FORCE_REINSTALL_REQUIREMENTS: drop the older installs of spec from sys.path and the modules
    # loaded from them, so the next import takes the new install (the real server resets the
    # interpreter's module cache after a forced reinstall).
    base = os.path.dirname(target)
    olds = [d for d in glob.glob(os.path.join(base, glob.escape(_safe(spec)) + '_*')) if d != target]
    for d in olds:
        while d in sys.path:
            sys.path.remove(d)
        prefix = d + os.sep
        for name, mod in list(sys.modules.items()):
            f = getattr(mod, '__file__', None) or ''
            if f.startswith(prefix):
                del sys.modules[name]


def ensure(specs, force, reqdir, warn):
    """Makes specs importable; returns the exec-style answer ["ok", [reqinfo...]] or ["err", text]."""
    infos = []
    with _lock:
        for spec in specs:
            if not force and spec in _installed:
                infos.append(_installed[spec])
                continue
            loc = _satisfied(spec)
            if loc is not None and not force:
                info = [spec, loc, [], 1, 1]
                _installed[spec] = info
                infos.append(info)
                continue
            if loc is not None and force:
                # Already part of the interpreter: nothing we could reinstall it into.
                info = [spec, loc, [], 1, 1]
                _installed[spec] = info
                infos.append(info)
                continue
            if not reqdir:
                warn('no requirements directory configured')
                return [b'err', DIR_FAILED]
            target = None
            if not force:
                for d in sorted(glob.glob(os.path.join(reqdir, glob.escape(_safe(spec)) + '_*'))):
                    if os.path.exists(os.path.join(d, '.gears-installed')):
                        target = d
                        break
            if target is None:
                try:
                    os.makedirs(reqdir, exist_ok=True)
                    target = os.path.join(reqdir, '%s_%s' % (_safe(spec), os.urandom(5).hex()))
                    os.makedirs(target)
                except OSError as e:
                    warn('could not create requirement directory: %s' % e)
                    return [b'err', DIR_FAILED]
                cmd = [sys.executable, '-m', 'pip', 'install', '--no-input',
                       '--disable-pip-version-check', '--target', target, spec]
                p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
                for line in p.stdout.decode('utf-8', 'replace').splitlines():
                    sys.stderr.write('pip: %s\n' % line)
                if p.returncode != 0:
                    warn('pip could not install %r (exit %d)' % (spec, p.returncode))
                    return [b'err', DOWNLOAD_FAILED]
                open(os.path.join(target, '.gears-installed'), 'w').close()
            if force:
                _forget_older(spec, target)
            if target not in sys.path:
                sys.path.append(target)
            info = [spec, target, _wheels(target), 1, 1]
            _installed[spec] = info
            infos.append(info)
    return [b'ok', infos]
