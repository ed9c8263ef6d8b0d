#!/usr/bin/env python3
r"""Run the scim2-tester compliance suite against a running SCIM server.

Install the pinned dependencies into a virtual environment first:

    python3 -m venv target/scim2-venv
    target/scim2-venv/bin/pip install -r scripts/scim2-tester-requirements.txt

Then, with the gateway listening:

    target/scim2-venv/bin/python scripts/scim2-tester.py \
        --base-url http://127.0.0.1:8080/scim/v2 --token "$TOKEN"

Every check result is printed as one line, `STATUS title [resource type]`,
followed by the reason and, for a result that fails or with --verbose, the
debugging data (usually the server's response). The last line is
`scim2-tester: N passed, N failed, N skipped`, after a recap of the failed
checks. The exit status is 1 when a check failed, 2 when the suite could not
run (or discovery left no resource type to test), 0 otherwise.

A check fails when its status is ERROR or CRITICAL (a MUST of RFC 7643/7644
broken) or DEVIATION (a SHOULD broken); --allow-deviations lets DEVIATION pass.
SUCCESS, COMPLIANT and ACCEPTABLE pass; SKIPPED is counted apart.

--trace FILE writes every HTTP exchange the suite makes (method, URL, request
body, status, response body) as JSON lines, each labelled with the check that
sent it, for debugging a failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

try:
    import httpx2
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import Status
    from scim2_tester import check_server
except ImportError as exc:  # pragma: no cover - depends on the environment
    sys.stderr.write(
        f"scim2-tester: missing dependency ({exc}); install with\n"
        "  python3 -m venv DIR && DIR/bin/pip install -r "
        "scripts/scim2-tester-requirements.txt\n"
        "and run this script with DIR/bin/python\n"
    )
    sys.exit(2)

FAILING = {Status.ERROR, Status.CRITICAL, Status.DEVIATION}


def _current_check() -> str | None:
    """Name the innermost scim2-tester check running on the call stack, if any.

    Every check is wrapped by scim2-tester's ``checker`` decorator, whose frame
    holds the checked function as ``func``; the requests that delete what a
    check created are labelled "(cleanup)".
    """
    cleanup = False
    frame = sys._getframe(1)
    while frame is not None:
        in_utils = frame.f_code.co_filename.replace("\\", "/").endswith(
            "/scim2_tester/utils.py"
        )
        if in_utils and frame.f_code.co_name == "cleanup":
            cleanup = True
        if in_utils and frame.f_code.co_name == "wrapped":
            name = getattr(frame.f_locals.get("func"), "__name__", None)
            return f"{name} (cleanup)" if cleanup and name else name
        frame = frame.f_back
    return None


def _body(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", errors="replace")


class Tracer:
    """Record each HTTP exchange as one JSON line."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("w", encoding="utf-8")
        self.seq = 0

    def on_response(self, response: httpx2.Response) -> None:
        response.read()
        request = response.request
        self.seq += 1
        record = {
            "seq": self.seq,
            "check": _current_check(),
            "method": request.method,
            "url": str(request.url),
            "request_headers": {
                k: v
                for k, v in request.headers.items()
                if k.lower() != "authorization"
            },
            "request_body": _body(request.content),
            "status": response.status_code,
            "response_headers": dict(response.headers.items()),
            "response_body": _body(response.content),
        }
        self.file.write(json.dumps(record, default=str) + "\n")
        self.file.flush()


def _text(value: Any, limit: int) -> str:
    if isinstance(value, httpx2.Response):
        body = _body(value.read())
        value = {
            "request": f"{value.request.method} {value.request.url}",
            "status": value.status_code,
            "body": body,
        }
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
    else:
        text = repr(value) if not isinstance(value, str) else value
    if limit and len(text) > limit:
        text = text[:limit] + f"... ({len(text) - limit} more characters)"
    return text


def _wait_for(base_url: str, seconds: float) -> bool:
    """Poll the discovery endpoint until the server answers 200."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            response = httpx2.get(f"{base_url}/ServiceProviderConfig", timeout=2.0)
            if response.status_code == 200:
                return True
        except httpx2.HTTPError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the scim2-tester SCIM 2.0 compliance checks against a server."
    )
    parser.add_argument(
        "--base-url",
        required=True,
        help="SCIM base URL, e.g. http://127.0.0.1:8080/scim/v2",
    )
    parser.add_argument("--token", required=True, help="bearer token")
    parser.add_argument(
        "--include-tag",
        action="append",
        default=[],
        help="run only checks with this tag (repeatable): discovery, crud, "
        "crud:create, crud:read, crud:update, crud:delete, patch, misc, ...",
    )
    parser.add_argument(
        "--exclude-tag",
        action="append",
        default=[],
        help="skip checks with this tag (repeatable)",
    )
    parser.add_argument(
        "--resource-type",
        action="append",
        default=[],
        help="test only this resource type (repeatable), e.g. User",
    )
    parser.add_argument(
        "--allow-deviations",
        action="store_true",
        help="let DEVIATION results (a SHOULD broken) pass",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print the debugging data of passing checks too",
    )
    parser.add_argument(
        "--data-limit",
        type=int,
        default=2000,
        help="cut printed debugging data after this many characters (0: never)",
    )
    parser.add_argument("--trace", type=Path, help="write every HTTP exchange here")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="HTTP timeout in seconds"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for GET /ServiceProviderConfig to answer 200",
    )
    args = parser.parse_args(argv)

    failing = set(FAILING)
    if args.allow_deviations:
        failing.discard(Status.DEVIATION)

    hooks: dict[str, list[Any]] = {"request": [], "response": []}
    tracer = Tracer(args.trace) if args.trace else None
    if tracer:
        hooks["response"].append(tracer.on_response)

    base_url = args.base_url.rstrip("/")
    http = httpx2.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {args.token}"},
        timeout=args.timeout,
        event_hooks=hooks,
    )
    client = SyncSCIMClient(http)

    if args.wait > 0 and not _wait_for(base_url, args.wait):
        print(
            f"scim2-tester: {base_url} did not answer within {args.wait:g} s",
            file=sys.stderr,
        )
        return 2

    print(f"scim2-tester: checking {base_url}", flush=True)
    try:
        results = check_server(
            client,
            include_tags=set(args.include_tag) or None,
            exclude_tags=set(args.exclude_tag) or None,
            resource_types=args.resource_type or None,
        )
    except Exception as exc:  # the suite itself broke, not one check
        print(f"scim2-tester: the suite could not run: {exc!r}", file=sys.stderr)
        return 2
    finally:
        http.close()
        if tracer:
            tracer.file.close()

    passed = failed = skipped = 0
    failures: list[str] = []
    for result in results:
        where = f" [{result.resource_type}]" if result.resource_type else ""
        print(f"{result.status.name} {result.title}{where}")
        if result.reason:
            print(f"    reason: {_text(result.reason, 0)}")
        bad = result.status in failing
        if result.data is not None and (bad or args.verbose):
            print(f"    data: {_text(result.data, args.data_limit)}")
        if bad:
            failed += 1
            failures.append(f"{result.status.name} {result.title}{where}")
        elif result.status == Status.SKIPPED:
            skipped += 1
        else:
            passed += 1

    if failures:
        print("failed checks:")
        for line in failures:
            print(f"  {line}")
    # check_server stops after discovery when it cannot describe the server:
    # a run without any per-resource-type result is no full run.
    no_resource_checks = not any(r.resource_type for r in results)
    if no_resource_checks:
        print(
            "scim2-tester: no resource type was tested (discovery failed?)",
            file=sys.stderr,
        )
    print(f"scim2-tester: {passed} passed, {failed} failed, {skipped} skipped")
    if failed:
        return 1
    return 2 if no_resource_checks else 0


if __name__ == "__main__":
    sys.exit(main())
