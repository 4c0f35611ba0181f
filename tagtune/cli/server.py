"""``tagtune server``: an MLflow tracking server on PostgreSQL (:func:`tagtune.server.serve`);
the flags take their defaults from :class:`tagtune.server.ServerSpec`."""

from __future__ import annotations

import argparse

HELP = "start an MLflow tracking server on PostgreSQL with proxied artifacts (a team's store)"
DESCRIPTION = (
    "Start `mlflow server` with a PostgreSQL backend store and proxied artifacts "
    "(--serve-artifacts), bound to 127.0.0.1 unless --host says otherwise. --postgres-dir DIR "
    "starts a local PostgreSQL cluster in DIR first (created on first use). --auth turns on "
    "MLflow's basic-auth app: the admin is $MLFLOW_TRACKING_USERNAME (default admin) with the "
    "password $MLFLOW_AUTH_ADMIN_PASSWORD (or $MLFLOW_TRACKING_PASSWORD); no password is "
    "printed, logged or put on a command line."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from tagtune.server import PERMISSIONS, ServerSpec

    p.add_argument("--backend-store-uri", default="", help="postgresql://USER@HOST:PORT/DB of the runs")
    p.add_argument("--postgres-dir", default=None, metavar="DIR", help="start a local PostgreSQL in DIR")
    p.add_argument("--postgres-port", type=int, default=5432, help="its port (default: %(default)s)")
    p.add_argument("--database", default="mlflow", help="database name with --postgres-dir (default: %(default)s)")
    p.add_argument(
        "--artifacts-destination",
        default="mlartifacts",
        metavar="DIR",
        help="where the server keeps artifacts (default: ./%(default)s)",
    )
    p.add_argument(
        "--host",
        default=ServerSpec.host,
        help="address to bind (default: %(default)s; 0.0.0.0 exposes it to the network)",
    )
    p.add_argument("--port", type=int, default=ServerSpec.port, help="port (default: %(default)s)")
    p.add_argument(
        "--allowed-hosts",
        default=ServerSpec.allowed_hosts,
        metavar="HOSTS",
        help="with --host 0.0.0.0: the host names clients use, e.g. 'mlflow.lab:5000,10.0.0.5:5000' "
        "(MLflow's security middleware refuses other Host headers)",
    )
    p.add_argument(
        "--workers", type=int, default=ServerSpec.workers, help="server worker processes (default: %(default)s)"
    )
    p.add_argument("--auth", action="store_true", help="MLflow's basic-auth app (users and permissions)")
    p.add_argument(
        "--default-permission",
        default=ServerSpec.default_permission,
        choices=PERMISSIONS,
        help="with --auth: what a user may do on experiments others created (default: %(default)s)",
    )
    p.add_argument(
        "--auth-cache-seconds",
        type=int,
        default=ServerSpec.auth_cache_seconds,
        metavar="S",
        help="with --auth: how long each server worker trusts a user's checked password (default: "
        "%(default)s). Checking the password hash costs about 0.1-0.6 s of CPU per request, so 0 "
        "(MLflow's own default) makes a search over HTTP several times slower; a changed or revoked "
        "password may still be accepted by other workers for this long",
    )


def run(args: argparse.Namespace) -> int:
    from tagtune.server import ServerSpec, serve

    spec = ServerSpec(
        backend_store_uri=args.backend_store_uri,
        artifacts_destination=args.artifacts_destination,
        host=args.host,
        port=args.port,
        auth=args.auth,
        default_permission=args.default_permission,
        workers=args.workers,
        allowed_hosts=args.allowed_hosts,
        auth_cache_seconds=args.auth_cache_seconds,
    )
    return serve(spec, args.postgres_dir, args.postgres_port, args.database)
