"""The registry service: ``zoo serve`` and its tokens, ``zoo token create|list|revoke``."""

from __future__ import annotations

import argparse
import sys

from zoo.cli.common import Commands, add_json, count_argument, emit, table
from zoo.errors import UsageError
from zoo.progress import status


def register(commands: Commands) -> None:
    _add_serve(commands)
    _add_token(commands)


def _add_serve(commands: Commands) -> None:
    p = commands.add_parser("serve", help="serve the registry over HTTP (JSON API, OpenAPI schema)",
                            description=("Serve the catalog and the artifact store as a versioned JSON API under "
                                         "/api/v1 (schema: /api/v1/openapi.json, docs: /api/v1/docs) with uvicorn "
                                         "until Ctrl-C. Publishing needs a token (zoo token create); reads too with "
                                         "--require-read-token. Answers only requests addressed to localhost, "
                                         "127.0.0.1 or [::1] with its port, or to an --allow-host name."))
    p.add_argument("--host", default="127.0.0.1", metavar="H",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8765, metavar="N", help="port (default 8765; 0: a free one, printed)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes sharing the port (default 1)")
    p.add_argument("--require-read-token", action="store_true", help="reads need a token too (scope read or publish)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to NAME (e.g. a reverse proxy's public name); repeatable")
    p.add_argument("--max-upload", type=count_argument, default=None, metavar="BYTES",
                   help="largest file a client may publish, e.g. 500M (default 4G)")
    p.add_argument("--max-bodies", type=int, default=None, metavar="N",
                   help="request bodies (uploads, try-it images) read at once by each worker; more are refused "
                        "with 503 and Retry-After (default 8)")
    p.add_argument("--body-timeout", type=float, default=None, metavar="SECONDS",
                   help="longest wait for the next part of a request body, and the time before --min-body-rate "
                        "counts; a slower body is cut with 408 (default 30)")
    p.add_argument("--min-body-rate", type=count_argument, default=None, metavar="BYTES",
                   help="lowest average rate of a request body in bytes a second, counted after --body-timeout "
                        "seconds; e.g. 64K (default 65536)")
    p.add_argument("--artifacts", choices=["proxy", "redirect"], default="proxy",
                   help="how a published file's GET is answered: proxy (streamed by the service, default) or "
                        "redirect (307 to a short-lived presigned URL of the object store: the bytes do not "
                        "pass through the service; needs ZOO_ARTIFACTS=s3://...)")
    p.add_argument("--presign-expiry", type=int, default=300, metavar="SECONDS",
                   help="with --artifacts redirect, how long a presigned URL is valid (default 300; at most 7 days): "
                        "a download needs it only to start")
    p.add_argument("--no-access-log", dest="access_log", action="store_false",
                   help="no log line per request (uvicorn's access log, on stderr; about a third of the CPU of an "
                        "answer kept in memory)")
    p.add_argument("--ready-file", metavar="FILE",
                   help="write the bound URL as JSON to FILE once the server answers")
    p.set_defaults(run=_serve)


def _add_token(commands: Commands) -> None:
    p = commands.add_parser("token", help="make, list and revoke the registry service's tokens")
    actions = p.add_subparsers(title="actions", required=True, metavar="ACTION")
    a = actions.add_parser("create", help="make a token and print its secret (once: only its hash is kept)")
    a.add_argument("name", metavar="NAME", help="what the token is for, e.g. ci-publisher")
    a.add_argument("--scope", action="append", choices=["publish", "read"], metavar="SCOPE",
                   help="publish (upload; reads too) or read; repeatable (default: publish)")
    a.set_defaults(run=_token_create)
    a = actions.add_parser("list", help="list tokens: name, scopes, made, revoked (never a secret)")
    add_json(a)
    a.set_defaults(run=_token_list)
    a = actions.add_parser("revoke", help="revoke a token: every service process refuses it from now on")
    a.add_argument("name", metavar="NAME")
    a.set_defaults(run=_token_revoke)


def _serve(args: argparse.Namespace) -> int:
    with status("starting the registry service"):  # it says its URL once it answers (zoo.service.app.serve)
        try:
            from zoo.service.app import DEFAULT_MAX_UPLOAD, serve
            from zoo.service.common import ArtifactServing, BodyLimits
        except ImportError as exc:
            raise UsageError(f"zoo serve needs the serve extra (pip install 'zoo-registry[serve]'): {exc}") from None
    given = {"concurrent": args.max_bodies, "timeout": args.body_timeout, "min_rate": args.min_body_rate}
    serve(host=args.host, port=args.port, workers=args.workers, read_token_required=args.require_read_token,
          allowed_hosts=tuple(args.allow_host), max_upload_bytes=args.max_upload or DEFAULT_MAX_UPLOAD,
          ready_file=args.ready_file, body_limits=BodyLimits(**{k: v for k, v in given.items() if v is not None}),
          artifacts=ArtifactServing(args.artifacts, args.presign_expiry), access_log=args.access_log)
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from zoo.catalog.tokens import DEFAULT_SCOPES
    from zoo.context import current

    secret = current().catalog.create_token(args.name, args.scope or DEFAULT_SCOPES)
    print(secret)
    print(f"token {args.name!r} made; this is the only time its secret is shown", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from zoo.context import current

    records = current().catalog.list_tokens()
    emit(args, records, lambda: table(
        ["NAME", "SCOPES", "CREATED", "REVOKED"],
        [[r["name"], ",".join(r["scopes"]), r["created_at"][:19], (r["revoked_at"] or "-")[:19]] for r in records],
    ) if records else "no tokens")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from zoo.context import current

    current().catalog.revoke_token(args.name)
    print(f"revoked token {args.name!r}")
    return 0
