"""`facegate watchlist enroll|remove|list|get|create|delete`: list administration through the gateway
(admin key). Enrolment goes through the gateway's face pipeline, the same as at the gate."""

from __future__ import annotations

import argparse
from pathlib import Path

from facegate.commands._gateway import (
    add_gateway_arguments,
    gateway,
    handles_errors,
    message_dict,
    print_json,
)
from facegate.gateway_client import KINDS
from facegate.v1 import watchlist_pb2


def register_admin(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("enroll", help="enrol a subject from photos (each: exactly one acceptable face)")
    p.add_argument("photos", type=Path, nargs="+")
    p.add_argument("--watchlist", required=True)
    p.add_argument("--subject-id", default="", help="default: generated")
    p.add_argument("--idempotency-key", default="", help="a retry with the same key returns the first result")
    p.add_argument("--display-name", default="", help="shown to officers on a hit; never logged")
    p.add_argument("--category", default="")
    p.add_argument("--reason", default="", help="why the subject is listed")
    p.add_argument("--external-ref", default="", help="case number in the source system")
    _finish(p, run_enroll)

    for name, help_text in (("remove", "erase a subject and every template"), ("get", "one subject")):
        p = actions.add_parser(name, help=help_text)
        p.add_argument("subject_id")
        p.add_argument("--watchlist", required=True)
        _finish(p, run_remove if name == "remove" else run_get)

    p = actions.add_parser("list", help="watchlists, or the subjects of one (--watchlist)")
    p.add_argument("--watchlist", default="", help="list this list's subjects instead of the lists")
    p.add_argument("--page-size", type=int, default=0)
    p.add_argument("--page-token", default="")
    _finish(p, run_list)

    p = actions.add_parser("create", help="create a watchlist")
    p.add_argument("name")
    p.add_argument("--kind", choices=sorted(KINDS), default="wanted")
    p.add_argument("--description", default="")
    _finish(p, run_create)

    p = actions.add_parser("delete", help="delete a watchlist with every subject and template in it")
    p.add_argument("name")
    _finish(p, run_delete)


def _finish(p: argparse.ArgumentParser, func) -> None:
    add_gateway_arguments(p)
    p.set_defaults(func=func)


def _show(args: argparse.Namespace, message, text: str) -> int:
    if args.json:
        print_json(message_dict(message))
    else:
        print(text)
    return 0


@handles_errors
def run_enroll(args: argparse.Namespace) -> int:
    info = watchlist_pb2.SubjectInfo(
        display_name=args.display_name,
        category=args.category,
        reason=args.reason,
        external_ref=args.external_ref,
    )
    with gateway(args) as gw:
        reply = gw.enroll(
            args.watchlist,
            [p.read_bytes() for p in args.photos],
            subject_id=args.subject_id,
            idempotency_key=args.idempotency_key,
            info=info,
        )
    state = "enrolled" if reply.created else "already enrolled (same idempotency key)"
    text = (
        f"{state}: {reply.subject.subject_id} on {args.watchlist}, {len(reply.subject.templates)} template(s)"
    )
    return _show(args, reply, text)


@handles_errors
def run_remove(args: argparse.Namespace) -> int:
    with gateway(args) as gw:
        reply = gw.remove_subject(args.watchlist, args.subject_id)
    return _show(args, reply, f"removed {args.subject_id}: {reply.templates_removed} template(s) erased")


@handles_errors
def run_get(args: argparse.Namespace) -> int:
    with gateway(args) as gw:
        subject = gw.get_subject(args.watchlist, args.subject_id)
    text = f"{subject.subject_id} on {subject.watchlist}: category {subject.info.category or '-'}, "
    text += f"{len(subject.templates)} template(s)"
    return _show(args, subject, text)


@handles_errors
def run_list(args: argparse.Namespace) -> int:
    with gateway(args) as gw:
        if not args.watchlist:
            lists = watchlist_pb2.ListWatchlistsResponse(watchlists=gw.list_watchlists())
            lines = [
                f"{w.name:<24} {watchlist_pb2.WatchlistKind.Name(w.kind).removeprefix('WATCHLIST_KIND_').lower():<7}"
                f" {w.subject_count} subject(s), {w.template_count} template(s)"
                for w in lists.watchlists
            ]
            return _show(args, lists, "\n".join(lines) or "no watchlists")
        page = gw.list_subjects(args.watchlist, page_size=args.page_size, page_token=args.page_token)
    lines = [
        f"{s.subject_id}  {s.info.category or '-'}  {len(s.templates)} template(s)" for s in page.subjects
    ]
    if page.next_page_token:
        lines.append(f"more: --page-token {page.next_page_token}")
    return _show(args, page, "\n".join(lines) or "no subjects")


@handles_errors
def run_create(args: argparse.Namespace) -> int:
    with gateway(args) as gw:
        created = gw.create_watchlist(args.name, args.kind, args.description)
    return _show(args, created, f"created {created.name} ({args.kind}), model {created.model_version[:12]}…")


@handles_errors
def run_delete(args: argparse.Namespace) -> int:
    with gateway(args) as gw:
        reply = gw.delete_watchlist(args.name)
    return _show(
        args,
        reply,
        f"deleted {args.name}: {reply.subjects_removed} subject(s), {reply.templates_removed} template(s)",
    )
