#!/usr/bin/env python3
"""Static checks of deploy/docker/Dockerfile and the top-level .dockerignore.

CI has no Docker daemon, so this cannot prove that the image builds or runs. It proves that
the Dockerfile is structurally what we intend and consistent with the repository:
  - it parses (line continuations, comments, one instruction per logical line);
  - it is multi-stage: the first stage builds FROM debian:12, the last one runs on a slim
    Debian 12 base, every COPY --from names an earlier stage, no image is untagged or
    `latest`;
  - the build stage uses a preset that CMakePresets.json defines, installs every build
    package of cmake/install_deps.sh (test, Python and git packages aside), and the runtime
    stage copies the binaries from that preset's build folder;
  - every COPY source from the context exists and is not excluded by .dockerignore, and
    every folder the top-level CMakeLists.txt adds is in the context;
  - .dockerignore excludes .git, build trees, venvs and dist/;
  - the runtime stage sets what operators rely on: ENTRYPOINT kvshuttled, a HEALTHCHECK
    running `kvshuttle ... health`, EXPOSE 9461, NVIDIA_VISIBLE_DEVICES,
    NVIDIA_DRIVER_CAPABILITIES, OCI labels, STOPSIGNAL SIGTERM.
Standard library only.
"""
import fnmatch
import json
import pathlib
import re
import shlex
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
RUNTIME_BASES = {"debian:12-slim", "gcr.io/distroless/cc-debian12"}
# install_deps.sh packages the image does not need: tests (GoogleTest, systemd for the unit
# checks), Python tools, git.
NOT_BUILD_PACKAGES = re.compile(r"^(python3.*|libgtest-dev|libgmock-dev|git|systemd)$")


def instructions(text):
    """[(line, INSTRUCTION, arguments)] of a Dockerfile (backslash continuations joined)."""
    out, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = pending + stripped
        pending = ""
        word, _, rest = logical.partition(" ")
        out.append((start, word.upper(), rest.strip()))
    if pending:
        raise ValueError(f"line {start}: instruction continues past the end of the file")
    return out


def exec_form(arguments):
    """The list of a JSON-array argument, or None for the shell form."""
    if arguments.startswith("["):
        value = json.loads(arguments)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return None


def ignore_patterns(text):
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        patterns.append((negate, pattern.strip().strip("/")))
    return patterns


def _matches(pattern, path):
    """Docker's rule: a pattern matches a path, or any parent folder of it."""
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if "**" in pattern:
            regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
            regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            if re.fullmatch(regex, prefix):
                return True
        elif fnmatch.fnmatchcase(prefix, pattern) and prefix.count("/") == pattern.count("/"):
            return True
    return False


def ignored(path, patterns):
    """Whether .dockerignore keeps `path` (relative to the repository) out of the context."""
    result = False
    for negate, pattern in patterns:
        if _matches(pattern, path):
            result = not negate
    return result


def install_deps_packages():
    text = (REPO / "cmake" / "install_deps.sh").read_text()
    block = re.search(r"packages=\((.*?)\)", text, re.S)
    return set(block.group(1).split()) if block else set()


def top_level_subdirectories():
    text = (REPO / "CMakeLists.txt").read_text()
    return set(re.findall(r"add_subdirectory\(\s*([\w./-]+)", text))


def preset_binary_dirs():
    presets = json.loads((REPO / "CMakePresets.json").read_text())
    return {p["name"]: p.get("binaryDir", "").replace("${sourceDir}/", "")
            for p in presets.get("configurePresets", [])}


def check():
    problems = []
    items = instructions(DOCKERFILE.read_text())
    patterns = ignore_patterns(DOCKERIGNORE.read_text())

    # Stages.
    stages = []  # (name, base, [(line, instruction, args)])
    for line, word, args in items:
        if word == "FROM":
            tokens = args.split()
            tokens = [t for t in tokens if not t.startswith("--platform")]
            name = tokens[2] if len(tokens) >= 3 and tokens[1].upper() == "AS" else str(len(stages))
            stages.append((name, tokens[0], []))
        elif not stages:
            if word != "ARG":
                problems.append(f"Dockerfile:{line}: {word} before the first FROM")
        else:
            stages[-1][2].append((line, word, args))
    if len(stages) < 2:
        problems.append(f"Dockerfile: {len(stages)} stage(s); a build and a runtime stage expected")
        return problems
    names = [s[0] for s in stages]
    for name, base, _ in stages:
        if base in names:
            continue
        image, _, tag = base.rpartition(":") if ":" in base.split("/")[-1] else (base, "", "")
        if "@sha256:" in base:
            continue
        if not tag or tag == "latest":
            problems.append(f"stage {name}: base image {base!r} needs an explicit, non-latest tag")
    build_name, build_base, build_items = stages[0]
    if build_base != "debian:12":
        problems.append(f"build stage {build_name}: FROM {build_base}; debian:12 expected")
    run_name, run_base, run_items = stages[-1]
    if run_base not in RUNTIME_BASES:
        problems.append(f"runtime stage {run_name}: FROM {run_base}; one of {sorted(RUNTIME_BASES)}")

    # Build stage: preset, packages.
    build_text = " ".join(args for _, _, args in build_items)
    preset = re.search(r"cmake --preset (\w+)", build_text)
    dirs = preset_binary_dirs()
    if not preset or preset.group(1) not in dirs:
        problems.append(f"build stage: no `cmake --preset NAME` with a preset of CMakePresets.json "
                        f"({', '.join(dirs)})")
        binary_dir = None
    else:
        binary_dir = dirs[preset.group(1)]
    wanted = {p for p in install_deps_packages() if not NOT_BUILD_PACKAGES.match(p)}
    installed = set(re.findall(r"[\w.+-]+", build_text))
    for package in sorted(wanted - installed):
        problems.append(f"build stage: does not install {package} (cmake/install_deps.sh has it)")

    # COPY sources and the context.
    for stage_name, _, stage_items in stages:
        for line, word, args in stage_items:
            if word not in ("COPY", "ADD"):
                continue
            tokens = shlex.split(args)
            flags = [t for t in tokens if t.startswith("--")]
            paths = [t for t in tokens if not t.startswith("--")]
            sources = paths[:-1]
            source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            if source_stage is not None:
                if source_stage not in names[: names.index(stage_name)]:
                    problems.append(f"Dockerfile:{line}: COPY --from={source_stage} is not an "
                                    "earlier stage")
                if binary_dir and source_stage == build_name:
                    for source in sources:
                        if f"/{binary_dir}/" not in source:
                            problems.append(f"Dockerfile:{line}: {source} is not in the preset's "
                                            f"build folder {binary_dir}/")
                continue
            for source in sources:
                relative = source[2:] if source.startswith("./") else source
                relative = "" if relative in (".", "") else relative.rstrip("/")
                if relative and not (REPO / relative).exists():
                    problems.append(f"Dockerfile:{line}: COPY source {source} does not exist")
                if relative and ignored(relative, patterns):
                    problems.append(f"Dockerfile:{line}: COPY source {source} is excluded by "
                                    ".dockerignore")
    for path in sorted(top_level_subdirectories()) + ["CMakeLists.txt", "CMakePresets.json", "cmake"]:
        if ignored(path, patterns):
            problems.append(f".dockerignore excludes {path}, which the build needs")
    for path in [".git", "build", "build-static", "build-cpu", ".venv", "dist", "bench/results",
                 "server/__pycache__/x.pyc"]:
        if not ignored(path, patterns):
            problems.append(f".dockerignore does not exclude {path}")

    # Runtime stage: what operators and the orchestrators rely on.
    runtime = {}
    for line, word, args in run_items:
        runtime.setdefault(word, []).append(args)
    entry = exec_form(runtime.get("ENTRYPOINT", [""])[-1])
    if not entry or not entry[0].endswith("/kvshuttled"):
        problems.append("runtime stage: ENTRYPOINT must be the exec form running kvshuttled")
    health = " ".join(runtime.get("HEALTHCHECK", []))
    if not re.search(r"kvshuttle\b.*\bhealth\b", health):
        problems.append("runtime stage: HEALTHCHECK must run `kvshuttle ... health`")
    if not any(re.search(r"\b9461\b", e) for e in runtime.get("EXPOSE", [])):
        problems.append("runtime stage: EXPOSE 9461 (metrics) missing")
    env = " ".join(runtime.get("ENV", []))
    for variable in ("NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_DRIVER_CAPABILITIES=compute,utility"):
        if variable not in env:
            problems.append(f"runtime stage: ENV {variable} missing")
    labels = " ".join(runtime.get("LABEL", []))
    for label in ("org.opencontainers.image.title", "org.opencontainers.image.version",
                  "org.opencontainers.image.revision"):
        if label not in labels:
            problems.append(f"runtime stage: LABEL {label} missing")
    if runtime.get("STOPSIGNAL", [""])[-1] != "SIGTERM":
        problems.append("runtime stage: STOPSIGNAL SIGTERM missing (SIGTERM drains)")
    copied = " ".join(runtime.get("COPY", []))
    for program in ("kvshuttled", "kvshuttle"):
        if not re.search(rf"/{program}(\s|$)", copied):
            problems.append(f"runtime stage: does not copy {program}")
    return problems


def main():
    problems = check()
    for problem in problems:
        print(f"FAIL: {problem}")
    if problems:
        return 1
    print("check_dockerfile: ok (structure only: CI has no Docker daemon; the image build is "
          "not exercised here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
