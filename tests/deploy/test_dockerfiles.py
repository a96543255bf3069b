"""The container images, checked by reading their Dockerfiles (no Docker engine runs here): multi-stage,
pinned base images, installs from the same lock files as `make`, the project with --no-deps, a
non-root numeric USER, model files baked in at build time, and one Dockerfile for every image the
manifests run. A known-bad Dockerfile fails each rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy import checks
from tests.deploy.conftest import REPO

DOCKER = REPO / "deploy" / "docker"
#: image repository -> (Dockerfile, build args) that builds it (docs/kubernetes.md has the commands).
IMAGES = {
    "facegate/gateway": ("slim.Dockerfile", {"SERVICE": "gateway", "MODULE": "gateway"}),
    "facegate/watchlist": ("slim.Dockerfile", {"SERVICE": "watchlist"}),
    "facegate/docverify": ("slim.Dockerfile", {"SERVICE": "docverify"}),
    "facegate/console": ("slim.Dockerfile", {"SERVICE": "console", "MODULE": "console"}),
    "facegate/detection": ("tensorflow.Dockerfile", {"SERVICE": "detection"}),
    "facegate/embedding": ("tensorflow.Dockerfile", {"SERVICE": "embedding"}),
    "facegate/embedding:gpu": ("embedding-gpu.Dockerfile", {}),
}


def problems_of(text: str) -> list[str]:
    """What is wrong with one Dockerfile."""
    joined = re.sub(r"\\\n", " ", text).splitlines()
    lines = [line for line in joined if line.strip() and not line.lstrip().startswith("#")]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", "\n".join(lines), re.M))
    froms = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    problems = []
    if len(froms) < 2:
        problems.append("not multi-stage")
    for image in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if image in {"stubs", "build"}:
            continue
        tag = image.rpartition(":")[2] if ":" in image else ""
        if not tag or tag == "latest" or "$" in image:
            problems.append(f"base image {image} is not pinned")
    final = text[text.upper().rfind("\nFROM ") :]
    users = re.findall(r"^USER (\S+)", final, re.M)
    if not users:
        problems.append("no USER in the final stage (runs as root)")
    elif not re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]):
        problems.append(f"USER {users[-1]} is not a numeric non-root uid (runAsNonRoot needs one)")
    service_lock = re.search(r"^COPY requirements/(?!proto\.lock)\S+\.lock (\S+)", text, re.M)
    installs_lock = service_lock is not None and (
        re.search(rf"pip install [^\n]*-r {re.escape(service_lock.group(1))}", text)
        or re.search(r"pip install [^\n]*-r /tmp/gpu\.lock", text)
    )
    if not installs_lock:
        problems.append("does not install the service from its requirements/*.lock")
    if "pip install --no-cache-dir --disable-pip-version-check --no-deps ." not in text:
        problems.append("does not install the project with --no-deps")
    if re.search(r"^(CMD|ENTRYPOINT)[^\n]*(model_setup|pip )", final, re.M):
        problems.append("downloads at run time")
    if "COPY --from=build /opt/venv /opt/venv" not in final:
        problems.append("the final stage does not take the built venv")
    return problems


@pytest.mark.parametrize("dockerfile", sorted(DOCKER.glob("*.Dockerfile")), ids=lambda p: p.name)
def test_dockerfile_rules(dockerfile: Path) -> None:
    assert problems_of(dockerfile.read_text()) == []


def test_every_lock_an_image_installs_exists() -> None:
    for dockerfile, build_args in IMAGES.values():
        text = (DOCKER / dockerfile).read_text()
        for lock in re.findall(r"requirements/([\w$\{\}]+)\.lock", text):
            lock = lock.replace("${SERVICE}", build_args.get("SERVICE", ""))
            assert (REPO / "requirements" / f"{lock}.lock").is_file(), (
                f"{dockerfile}: requirements/{lock}.lock"
            )


def test_model_weights_are_baked_in_at_build_time() -> None:
    for name in ("tensorflow.Dockerfile", "embedding-gpu.Dockerfile"):
        text = (DOCKER / name).read_text()
        build = text[: text.upper().rfind("\nFROM ")]
        assert "services.embedding.model_setup --models-dir /opt/facegate/models" in build, name
        assert "COPY --from=build /opt/facegate/models /opt/facegate/models" in text, name
    gpu = (DOCKER / "embedding-gpu.Dockerfile").read_text()
    assert "tensorflow[and-cuda]==${TF}" in gpu


def test_gpu_image_swaps_the_locked_tensorflow_cpu_for_the_cuda_build() -> None:
    """Runs the GPU Dockerfile's filter on the real lock: tensorflow-cpu (whatever its spelling in the
    lock) must go, or the image would hold both TensorFlow builds; its version must be found."""
    gpu = (DOCKER / "embedding-gpu.Dockerfile").read_text()
    grep = re.search(r"grep -viE '([^']+)' /tmp/embedding\.lock > /tmp/gpu\.lock", gpu)
    sed = re.search(r"sed -nE 's/([^/]+)//Ip' /tmp/embedding\.lock", gpu)
    assert grep and sed, "the GPU Dockerfile's lock filter changed: update this test"
    lock = (REPO / "requirements" / "embedding.lock").read_text().splitlines()
    kept = [line for line in lock if not re.search(grep.group(1), line, re.I)]
    versions = [
        re.sub(sed.group(1), "", line, flags=re.I) for line in lock if re.search(sed.group(1), line, re.I)
    ]
    assert len(kept) == len(lock) - 1, "exactly the tensorflow-cpu pin is removed"
    assert not any(re.match(r"tensorflow[-_.]cpu", line, re.I) for line in kept)
    assert versions and re.fullmatch(r"\d+\.\d+\.\d+", versions[0]), versions


def test_every_image_the_manifests_run_has_a_dockerfile(rendered) -> None:
    for objs in rendered.values():
        for w in [*checks.facegate_workloads(objs), checks.find(objs, "Deployment", "console")]:
            image = checks.pod_spec(w)["containers"][0]["image"]
            repo = re.sub(r"^registry\.example\.org/", "", image.rpartition(":")[0])
            key = f"{repo}:gpu" if image.endswith("-gpu") else repo
            assert key in IMAGES, f"{image}: no Dockerfile builds it"
            dockerfile, build_args = IMAGES[key]
            text = (DOCKER / dockerfile).read_text()
            module = checks.pod_spec(w)["containers"][0]["command"][-1]
            # the module the manifest runs is the one the image's default command runs
            default = build_args.get("MODULE") or (
                "services." + build_args["SERVICE"] if "SERVICE" in build_args else "services.embedding"
            )
            assert module == default, f"{image}: runs {module}, the image defaults to {default}"
            assert dockerfile in (REPO / "docs" / "kubernetes.md").read_text()
            del text


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda t: t.replace("USER 10001:10001\n", ""), "no USER"),
        (lambda t: t.replace("USER 10001:10001", "USER facegate"), "numeric"),
        (lambda t: t.replace("python:3.11.11-slim-bookworm", "python:latest"), "not pinned"),
        (lambda t: t.replace("-r /tmp/service.lock", "facegate[gateway]"), "lock"),
        (lambda t: t.replace("--no-deps .", "."), "--no-deps"),
        (lambda t: t.replace('CMD ["sh"', 'CMD ["pip install x && sh"'), "run time"),
    ],
)
def test_a_bad_dockerfile_is_caught(mutate, expect) -> None:
    problems = problems_of(mutate((DOCKER / "slim.Dockerfile").read_text()))
    assert any(expect in p for p in problems), problems
