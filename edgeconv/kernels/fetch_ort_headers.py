#!/usr/bin/env python3
"""Fetch the ONNX Runtime C/C++ API headers (for building custom-op libraries).

Downloads Debian trixie's ``libonnxruntime-dev`` .deb with apt using fully
private state (own sources list, lists, cache, empty dpkg status; system
update hooks and pinning disabled), unpacks it with ``dpkg-deb -x`` and
installs only ``usr/include/onnxruntime/`` into the destination.  Nothing is
installed system-wide and /etc/apt, /var/lib/apt, /var/cache/apt are not
written.  The last stdout line is the include directory (the one holding
onnxruntime_c_api.h).  Stdlib only.

    python3 fetch_ort_headers.py [--dest DIR] [--quiet]
"""
import argparse, os, pathlib, pwd, shutil, subprocess, sys, tempfile

PACKAGE = "libonnxruntime-dev"
HEADER = "onnxruntime_c_api.h"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"  # holds the 13/trixie keys
SOURCE = f"deb [signed-by={KEYRING}] http://deb.debian.org/debian trixie main\n"
CACHE_ROOT = pathlib.Path.home() / ".cache" / "edgeconv" / "ort-headers"
TIMEOUT = 300  # seconds, per apt-get update / download
# Read after the system config (-c): drop hooks that would touch system state
# (e.g. appstream/packagekit refresh), and pin to the host architecture only.
APT_CONF = """#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
#clear APT::Architectures;
APT::Architectures {{ "{arch}"; }};
APT::Architecture "{arch}";
APT::Update::Error-Mode "any";
"""


class FetchError(RuntimeError):
    """Fetching the headers failed; str(exc) is a one-line reason."""


def _run(cmd, what, quiet=True, cwd=None, timeout=60):
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    try:
        p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, timeout=timeout,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, errors="replace")
    except subprocess.TimeoutExpired:
        raise FetchError(f"{what} timed out after {timeout}s") from None
    except OSError as e:
        raise FetchError(f"{what}: cannot run {cmd[0]}: {e.strerror}") from None
    if not quiet and p.stdout:
        sys.stderr.write(p.stdout)
    if p.returncode != 0:
        errs = [ln[3:].strip() for ln in p.stdout.splitlines() if ln.startswith("E: ")]
        reason = errs[0] if errs else (p.stdout.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        raise FetchError(f"{what} failed: {reason}")
    return p.stdout


def _cached(dest):
    if dest is not None:
        return dest if (dest / HEADER).is_file() else None
    hits = sorted(CACHE_ROOT.glob(f"*/{HEADER}"), key=lambda p: p.stat().st_mtime)
    return hits[-1].parent if hits else None  # any cached version will do


def _download(tmp, quiet):
    """Private-state apt-get update + download; returns the .deb path."""
    apt = shutil.which("apt-get")
    if not apt or not shutil.which("dpkg-deb"):
        raise FetchError("apt-get/dpkg-deb not found (a Debian-based system is required)")
    if not os.path.isfile(KEYRING):
        raise FetchError(f"{KEYRING} missing (install debian-archive-keyring)")
    arch = _run(["dpkg", "--print-architecture"], "dpkg --print-architecture").strip()
    os.chmod(tmp, 0o755)  # let apt's _apt sandbox user traverse it when run as root
    for d in ("lists/partial", "archives/partial", "dl", "preferences.d"):
        (tmp / d).mkdir(parents=True)
    (tmp / "sources.list").write_text(SOURCE)
    (tmp / "status").write_text("")
    (tmp / "apt.conf").write_text(APT_CONF.format(arch=arch))
    if os.geteuid() == 0:
        try:  # root: apt downloads as _apt, which must be able to write here
            os.chown(tmp / "dl", pwd.getpwnam("_apt").pw_uid, -1)
        except KeyError:
            pass
    opts = ["-c", tmp / "apt.conf",
            "-o", f"Dir::Etc::SourceList={tmp}/sources.list",
            "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::Etc::Preferences={tmp}/preferences",  # ignore system pins
            "-o", f"Dir::Etc::PreferencesParts={tmp}/preferences.d",
            "-o", f"Dir::State={tmp}", "-o", f"Dir::State::Lists={tmp}/lists",
            "-o", f"Dir::State::status={tmp}/status",
            "-o", f"Dir::Cache={tmp}", "-o", f"Dir::Cache::Archives={tmp}/archives",
            "-o", f"APT::Architecture={arch}", "-o", "APT::Update::Error-Mode=any"]
    q = ["-qq"] if quiet else ["-q"]
    _run([apt, *q, *opts, "update"], "apt-get update (debian trixie)", quiet, timeout=TIMEOUT)
    _run([apt, *q, *opts, "download", PACKAGE], f"apt-get download {PACKAGE}", quiet,
         cwd=tmp / "dl", timeout=TIMEOUT)
    debs = sorted((tmp / "dl").glob(f"{PACKAGE}_*.deb"))
    if len(debs) != 1:
        raise FetchError(f"apt-get download produced no single {PACKAGE} .deb")
    return debs[0]


def fetch(dest=None, quiet=True):
    """Return the include dir holding onnxruntime_c_api.h, fetching it if needed.

    dest defaults to ~/.cache/edgeconv/ort-headers/<debian-version>/ (any
    already-cached version there is reused without network access).
    Raises FetchError on failure.
    """
    dest = pathlib.Path(dest).expanduser().absolute() if dest is not None else None
    hit = _cached(dest)
    if hit is not None:
        return hit
    try:
        with tempfile.TemporaryDirectory(prefix="edgeconv-ort-apt-") as tmp:
            deb = _download(pathlib.Path(tmp), quiet)
            version = _run(["dpkg-deb", "-f", deb, "Version"], "dpkg-deb -f").strip()
            if dest is None:
                dest = CACHE_ROOT / version.replace(":", "_").replace("/", "_")
            dest.parent.mkdir(parents=True, exist_ok=True)
            # Stage next to dest (same filesystem) and rename into place: atomic.
            stage = pathlib.Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
            try:
                _run(["dpkg-deb", "-x", deb, stage], "dpkg-deb -x", timeout=120)
                inc = stage / "usr" / "include" / "onnxruntime"
                if not (inc / HEADER).is_file():
                    raise FetchError(f"{HEADER} not found in {deb.name} (unexpected layout)")
                try:
                    os.rename(inc, dest)  # also replaces an empty existing dest dir
                except OSError as e:
                    if not (dest / HEADER).is_file():  # else: a concurrent run won
                        raise FetchError(f"cannot create {dest}: {e.strerror}") from None
            finally:
                shutil.rmtree(stage, ignore_errors=True)
    except OSError as e:
        raise FetchError(f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")) from None
    if not quiet:
        print(f"fetch_ort_headers: {PACKAGE} {version} -> {dest}", file=sys.stderr)
    return dest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", help="include dir to create (default: "
                    "~/.cache/edgeconv/ort-headers/<version>/)")
    ap.add_argument("--quiet", action="store_true", help="suppress apt output")
    args = ap.parse_args(argv)
    try:
        path = fetch(args.dest, quiet=args.quiet)
    except FetchError as e:
        print(f"fetch_ort_headers: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
