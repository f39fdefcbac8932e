"""NATS security: one nkey identity per actor role, the gateway, the API and the CLI, each
allowed only its own subjects (``switchboard nats-config``), and how a process connects with
its credentials and TLS.

- ``permissions``, ``sends_to``, ``inbox_prefix``: what each identity may publish and
  subscribe to (pure; ``_permissions``);
- ``write_nats_config``, ``render_server_config``: seed files and the server's ``accounts``
  block (``_files``);
- ``client_options``, ``settings_for``, ``tls_context``, ``connect_error``, ``check_tls``,
  ``ErrorLog``, ``refusal``: the client side (``_client``).
"""

from natsauth._client import (
    ErrorLog,
    check_tls,
    client_options,
    connect_error,
    quiet_tls_close,
    redact,
    refusal,
    seed_file,
    settings_for,
    tls_context,
    wants_tls,
    watch_refusals,
)
from natsauth._files import (
    ACCOUNT,
    SEED_SUFFIX,
    SERVER_CONFIG,
    NatsConfig,
    identity_names,
    new_seed,
    public_key,
    read_seed,
    render_server_config,
    write_nats_config,
)
from natsauth._permissions import (
    API,
    CLI,
    GATEWAY,
    Permissions,
    inbox_prefix,
    permissions,
    sends_to,
)

__all__ = [
    "ACCOUNT",
    "API",
    "CLI",
    "GATEWAY",
    "SEED_SUFFIX",
    "SERVER_CONFIG",
    "ErrorLog",
    "NatsConfig",
    "Permissions",
    "check_tls",
    "client_options",
    "connect_error",
    "identity_names",
    "inbox_prefix",
    "new_seed",
    "permissions",
    "public_key",
    "quiet_tls_close",
    "read_seed",
    "redact",
    "refusal",
    "render_server_config",
    "seed_file",
    "sends_to",
    "settings_for",
    "tls_context",
    "wants_tls",
    "watch_refusals",
    "write_nats_config",
]
