"""Credentials: where they come from, where they are kept, and how requests carry them.

Import the module you need; this package's face imports nothing, because its modules pull in httpx and keyring,
which commands that never touch them (``fgsync package``, env credentials) must not pay for.

Modules: ``credentials`` (resolution in SPEC order: FGSYNC_TOKEN, CLOUD_SDK_AK/SK, the OS keyring; the
``httpx.Auth`` a client uses), ``keyring_store`` (entries in the OS keyring, split and checked, with a timeout),
``iam`` (password login), ``tokens`` (a token's text and expiry, whatever its source), ``signer``
(SDK-HMAC-SHA256 as an ``httpx.Auth``), ``obs_signer`` (OBS's own signature as an ``httpx.Auth``), ``temporary``
(OBS keys: the AK/SK pair, or temporary keys from IAM for a token; ``ObsAuth``).
"""
