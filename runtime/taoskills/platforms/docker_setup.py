"""What the docker platform prepares on the daemon before a job's container starts: the image
(pull policy, nvcr.io login with ``NGC_KEY`` read by name) and, for results in a volume, the
volume owned by the container user."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from taoskills.errors import JobError
from taoskills.platforms import docker_config as dc
from taoskills.platforms.docker import _sdk

if TYPE_CHECKING:
    from taoskills.platforms.docker import DockerPlatform

NGC_USERNAME = "$oauthtoken"  # NGC's registry user name (TAO SDK 7.2.0 DOCKER_USERNAME default)


def ensure_image(plat: DockerPlatform, image: str) -> None:
    """Apply the pull policy to ``image``; log in to nvcr.io with ``NGC_KEY`` (by name) first.

    Errors: JobError naming the image, the policy and the fix."""
    docker = _sdk()
    present = True
    try:
        plat.client.images.get(image)
    except docker.errors.ImageNotFound:
        present = False
    if present and plat.cfg.pull != "always":
        return
    if plat.cfg.pull == "never":
        raise JobError(
            f"image {image} is not on this Docker host and the pull policy is 'never'",
            field="image",
            fix=f"docker pull {image} (or build it), or set TAO_SKILLS_DOCKER_PULL=missing",
        )
    auth = None
    if image.startswith("nvcr.io/"):
        if not os.environ.get("NGC_KEY"):
            raise JobError(
                f"image {image} must be pulled from nvcr.io and NGC_KEY is not set",
                field="NGC_KEY",
                fix="export NGC_KEY=<your NGC API key> (read by name; never written anywhere), or pull the image by hand",
            )
        auth = {"username": NGC_USERNAME, "password": os.environ["NGC_KEY"]}
    try:
        plat.client.images.pull(image, auth_config=auth)
    except Exception as exc:
        raise JobError(
            f"could not pull {image}: {type(exc).__name__}",
            field="image",
            fix="check the network, the registry and NGC_KEY; or pull/build the image by hand and set TAO_SKILLS_DOCKER_PULL=never",
        ) from None  # the SDK's message may echo request details: keep it out


def own_volume(plat: DockerPlatform, image: str, user: str, volume: str, job_id: str) -> None:
    """Create the results volume and give it to ``user`` (a fresh volume belongs to root):
    a one-shot ``chown`` as root with only CAP_CHOWN, no network, no new privileges."""
    docker = _sdk()
    plat.client.volumes.create(volume, labels={dc.LABEL_JOB: job_id})
    plat.client.containers.run(
        image,
        ["chown", user, dc.RESULTS_MOUNT],
        user="0:0",
        cap_drop=["ALL"],
        cap_add=["CHOWN"],
        security_opt=["no-new-privileges:true"],
        network_mode="none",
        mounts=[docker.types.Mount(dc.RESULTS_MOUNT, volume, type="volume")],
        remove=True,
        labels={f"{dc.LABEL_PREFIX}.volume-owner": job_id},
    )
