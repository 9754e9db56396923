"""How a package reaches FunctionGraph: inside the request, or through OBS.

FunctionGraph takes a zip of up to 50 MB (a dependency: 40 MB) in the request body; with AK/SK credentials a
signed request body is limited to 12 MB (about 9 MB of zip, in base64). Anything larger goes through OBS when
``[obs]`` is set: the zip is put into the bucket under a content-addressed key, ``<prefix><package>/<function
name>/<sha256>.zip`` (a HEAD first: an object already there is not sent again), and the function (or the
dependency version) is given the object's URL. Through OBS the limit is 300 MB. Without ``[obs]`` a package
that does not fit is refused before any upload, naming its size, the limit and ``[obs]``.

Objects fgsync put for a function are deleted once the function no longer uses them; the newest two are kept
(:mod:`fgsync.sync.obs_target`, loaded only for a config with ``[obs]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from fgsync.errors import PackageError
from fgsync.package.dependencies import MAX_DEPENDENCY_BYTES, MAX_DEPENDENCY_OBS_BYTES
from fgsync.package.model import MAX_PACKAGE_BYTES

if TYPE_CHECKING:
    from fgsync.config import FunctionConfig
    from fgsync.package import Package
    from fgsync.sync.obs_target import ObsTarget  # imported where [obs] is set up (cli.context): most configs lack it

#: Through OBS a package (code or dependency) may reach 300 MB (314,572,800 bytes).
MAX_OBS_BYTES = MAX_DEPENDENCY_OBS_BYTES
#: The JSON around the base64 of a package, at most (code_type, code_filename, the dependency list, ...).
_FRAME_BYTES = 4096


def signed_body_bytes(size: int) -> int:
    """The request body for a package of ``size`` bytes, at most: its base64 in fgsync's JSON."""
    return 4 * ((size + 2) // 3) + _FRAME_BYTES


@dataclass(frozen=True)
class UploadRoute:
    """How a sync's packages are sent.

    Attributes:
        obs: the ``[obs]`` bucket, when configured (and a sync is to send something).
        signed: the requests are AK/SK-signed (their bodies are limited to 12 MB).
        obs_configured: ``[obs]`` is set, even when ``obs`` is not built (`status` only packages).
    """

    obs: Optional[ObsTarget] = None
    signed: bool = False
    obs_configured: bool = False

    @property
    def large(self) -> bool:
        """Whether packages up to OBS's 300 MB can be sent."""
        return self.obs is not None or self.obs_configured

    @property
    def max_code_bytes(self) -> int:
        """The largest code zip this route can send at all (packaging refuses larger ones)."""
        return MAX_OBS_BYTES if self.large else MAX_PACKAGE_BYTES

    @property
    def max_dependency_bytes(self) -> int:
        """The largest dependency zip this route can send at all."""
        return MAX_OBS_BYTES if self.large else MAX_DEPENDENCY_BYTES

    def close(self) -> None:
        """Close the OBS client, if any."""
        if self.obs is not None:
            self.obs.client.close()

    def through_obs(self, fn: FunctionConfig, package: Package, *, dependency: bool = False) -> bool:
        """Whether the package goes through OBS (it does not fit in a request).

        Raises:
            PackageError: it does not fit in a request and there is no ``[obs]``; or it is over OBS's 300 MB.
        """
        direct = MAX_DEPENDENCY_BYTES if dependency else MAX_PACKAGE_BYTES
        if package.size <= direct and not self.signed:
            return False
        from fgsync.auth.signer import MAX_SIGNED_BODY_BYTES  # here: the signer (httpx, hmac) is for AK/SK only

        signed_fits = not self.signed or signed_body_bytes(package.size) <= MAX_SIGNED_BODY_BYTES
        if package.size <= direct and signed_fits:
            return False
        what = "dependency package" if dependency else "package"
        if package.size > MAX_OBS_BYTES:
            raise PackageError(
                f"{fn.name}: the {what} is {package.size:,} bytes, over the limit of {MAX_OBS_BYTES:,} bytes even "
                "through OBS: leave out what the function does not need at run time"
            )
        if self.obs is not None:
            return True
        if package.size > direct:
            limit = f"the limit of {direct:,} bytes for an upload in the request"
        else:
            limit = (
                f"what an AK/SK-signed request can carry ({MAX_SIGNED_BODY_BYTES:,} bytes of body, about "
                f"{MAX_SIGNED_BODY_BYTES * 3 // 4:,} bytes of zip); token credentials (`fgsync login`) lift that"
            )
        raise PackageError(
            f"{fn.name}: the {what} is {package.size:,} bytes, over {limit}: set [obs] bucket = \"...\" in "
            f"fgsync.toml to send it through OBS (up to {MAX_OBS_BYTES:,} bytes; docs/obs.md)"
        )
