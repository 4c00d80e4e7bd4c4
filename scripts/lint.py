#!/usr/bin/env python3
"""Format and lint checks of the repository's C++ (run by ./scripts/test.sh).

  format  every tracked C/C++/CUDA file must be unchanged by clang-format (the repository's .clang-format)
  tidy    every C++ translation unit of the libraries, programs, benchmarks and harness in a build tree's
          compile_commands.json that does not include LibTorch must pass the repository's .clang-tidy
          without a warning (tests are not tidied)

clang-tidy takes 5-30 s per translation unit on these machines (most of it parsing LibTorch's headers), so a
clean result is remembered in a cache keyed by everything that decides it: the clang-tidy version, the
.clang-tidy file, the compile command and the preprocessed translation unit (every header it includes), with
the checkout's path taken out so that clones elsewhere share it. An unchanged file is not checked again; a
change to a header re-checks exactly the units that include it. A result with warnings is never cached.

Usage: scripts/lint.py [format] [tidy] [--build-dir build] [--jobs N] [--cache DIR] [--files F ...]
Exit status: 0 clean, 1 findings, 2 usage or tool errors.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORMAT_SUFFIXES = (".cc", ".h", ".cu", ".cuh")
# Units that include LibTorch are not tidied: clang 14 cannot parse LibTorch 1.13's headers against
# GCC 12's libstdc++ in C++20 mode (c10::IValue is incomplete where std::vector<IValue> is
# instantiated), so every such unit would fail with compiler errors, not findings. The byte-level
# modules (common, transport, dht, quant core, protocol), their tests and the programs without
# LibTorch are checked.
LIBTORCH_INCLUDE = "/torch/csrc/api/include"
# Test code sets environment variables, copies values for readability and builds small vectors in
# loops on purpose; it is checked by the compilers' warnings, the sanitizers and clang-format, not
# by clang-tidy.
TIDY_SKIPPED_DIRS = ("tests",)
TIDY_SUFFIXES = (".cc",)


def tracked_files(suffixes):
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    return [f for f in out.decode().split("\0") if f.endswith(suffixes)]


def check_format(files):
    bad = []
    for start in range(0, len(files), 200):
        chunk = files[start:start + 200]
        proc = subprocess.run(["clang-format", "--dry-run", "-Werror", *chunk], cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            bad.extend(sorted({line.split(":", 1)[0] for line in proc.stderr.splitlines()
                               if ": error:" in line}))
    for f in bad:
        print(f"lint: format: {f} differs from clang-format's output (run: clang-format -i {f})")
    print(f"lint: format: {len(files) - len(bad)} of {len(files)} files clean")
    return not bad


def preprocess_command(entry):
    """The unit's compile command turned into one that writes the preprocessed source to stdout."""
    args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    out = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD") or a.startswith("-o"):
            continue
        out.append(a)
    return out + ["-E", "-P"]


def tidy_key(entry, salt):
    proc = subprocess.run(preprocess_command(entry), cwd=entry["directory"], capture_output=True)
    if proc.returncode != 0:
        return None  # clang-tidy will report why the unit does not compile
    # The checkout's own path appears in the command and, through __FILE__, in the preprocessed text:
    # replaced, so a fresh clone in another folder reuses the results of an identical tree.
    root = str(ROOT).encode()
    h = hashlib.sha256(salt)
    h.update(json.dumps(entry.get("arguments") or entry["command"]).encode().replace(root, b"@"))
    h.update(proc.stdout.replace(root, b"@"))
    return h.hexdigest()


def tidy_one(entry, build_dir, cache, salt):
    rel = os.path.relpath(entry["file"], ROOT)
    key = tidy_key(entry, salt)
    if key and (cache / key).exists():
        return rel, True, True, ""
    proc = subprocess.run(["clang-tidy", "-p", str(build_dir), "--quiet",
                           "--extra-arg=-Wno-unknown-warning-option", entry["file"]],
                          cwd=ROOT, capture_output=True, text=True)
    findings = [l for l in proc.stdout.splitlines() if ": warning:" in l or ": error:" in l]
    ok = proc.returncode == 0 and not findings
    if ok and key:
        (cache / key).touch()
    return rel, ok, False, proc.stdout + proc.stderr


def check_tidy(build_dir, jobs, cache, only):
    db_path = build_dir / "compile_commands.json"
    if not db_path.exists():
        print(f"lint: tidy: {db_path} not found (configure the build first)", file=sys.stderr)
        return None
    entries = []
    skipped_torch = 0
    for e in json.loads(db_path.read_text()):
        f = Path(e["file"]).resolve()
        try:
            rel = f.relative_to(ROOT)
        except ValueError:
            continue
        if rel.parts[0].startswith("build") or rel.parts[0] in TIDY_SKIPPED_DIRS:
            continue
        if not str(rel).endswith(TIDY_SUFFIXES):
            continue
        if only and str(rel) not in only:
            continue
        if LIBTORCH_INCLUDE in (e.get("command") or " ".join(e.get("arguments", []))):
            skipped_torch += 1
            continue
        entries.append(e)
    version = subprocess.run(["clang-tidy", "--version"], capture_output=True).stdout
    salt = version + (ROOT / ".clang-tidy").read_bytes()
    cache.mkdir(parents=True, exist_ok=True)
    failed = []
    cached = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for rel, ok, hit, output in pool.map(lambda e: tidy_one(e, build_dir, cache, salt), entries):
            cached += hit
            if not ok:
                failed.append(rel)
                print(output.rstrip())
    for rel in failed:
        print(f"lint: tidy: {rel} has findings")
    print(f"lint: tidy: {len(entries) - len(failed)} of {len(entries)} units clean "
          f"({cached} unchanged since a clean check; {skipped_torch} LibTorch units not checked)")
    return not failed


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checks", nargs="*", choices=["format", "tidy"], default=[])
    p.add_argument("--build-dir", default="build", help="tree whose compile_commands.json is linted")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--cache", default=os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hivemind", "clang-tidy"))
    p.add_argument("--files", nargs="+", default=None, help="tidy only these units (paths in the repo)")
    args = p.parse_args()
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    checks = args.checks or ["format", "tidy"]
    ok = True
    if "format" in checks:
        ok &= check_format(tracked_files(FORMAT_SUFFIXES))
    if "tidy" in checks:
        result = check_tidy((ROOT / args.build_dir).resolve(), args.jobs, Path(args.cache),
                            set(args.files) if args.files else None)
        if result is None:
            return 2
        ok &= result
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
