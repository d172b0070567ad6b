"""Reads a monthly export back with pyarrow and checks it against the events
the integration test generated (tests/tests/it/export.rs), recomputing every
feature here, independently of the Rust code: exact sorting for percentiles,
plain Python for everything else.

Usage: check_export.py DIR   (DIR holds events/, features/ and expected.json)
Exits non-zero, naming the first difference, if anything does not match.
"""

import calendar
import datetime as dt
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

UTC_US = pa.timestamp("us", tz="UTC")
EVENT_SCHEMA = [
    ("ts", UTC_US), ("account_ref", pa.string()), ("subject_ref", pa.string()),
    ("source", pa.string()), ("endpoint", pa.string()), ("method", pa.string()),
    ("http_status", pa.int32()), ("latency_ms", pa.int64()), ("units", pa.int64()),
    ("ticket_priority", pa.string()), ("ticket_status", pa.string()), ("billing_status", pa.string()),
]
FEATURE_SCHEMA = [
    ("month_start", UTC_US), ("account_ref", pa.string()), ("tenure_months", pa.int32()),
    ("monthly_quota", pa.int64()), ("calls", pa.int64()), ("units", pa.int64()),
    ("errors_4xx", pa.int64()), ("errors_5xx", pa.int64()), ("error_rate", pa.float64()),
    ("latency_p50_ms", pa.int64()), ("latency_p95_ms", pa.int64()), ("latency_p99_ms", pa.int64()),
    ("calls_trend", pa.float64()), ("active_days", pa.int32()), ("active_users", pa.int64()),
    ("endpoint_templates", pa.int64()), ("quota_share", pa.float64()), ("product_events", pa.int64()),
    ("marketing_touches", pa.int64()), ("tickets", pa.int64()), ("urgent_tickets", pa.int64()),
    ("invoices", pa.int64()), ("failed_payments", pa.int64()), ("outcome", pa.string()),
]
BOUNDS = [50, 100, 250, 500, 1000, 2500]


def fail(message):
    print(f"MISMATCH: {message}")
    sys.exit(1)


def parse_time(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def read_table(directory, name, schema):
    files = sorted((directory / name).glob("part-*.parquet"))
    if len(files) != 16:
        fail(f"{name}: {len(files)} files, expected one per shard (16)")
    tables = [pq.read_table(f) for f in files]
    for path, table in zip(files, tables):
        got = [(f.name, f.type) for f in table.schema]
        if got != schema:
            fail(f"{path.name}: schema {got} != {schema}")
    return pa.concat_tables(tables).to_pylist()


def percentile(latencies, q):
    """Nearest rank over the sorted latencies, reported as the bound of the
    bucket it falls in (the slowest bucket reports its lower bound)."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    value = ordered[min(max(math.ceil(q * len(ordered)), 1), len(ordered)) - 1]
    return next((b for b in BOUNDS if value <= b), BOUNDS[-1])


def trend(daily):
    n = len(daily)
    total = sum(daily)
    if total == 0:
        return None
    xs = range(n)
    mx = (n - 1) / 2
    my = total / n
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, daily))
    var = sum((x - mx) ** 2 for x in xs)
    return cov / var / my


def whole_months(start, first_day):
    months = (first_day.year - start.year) * 12 + first_day.month - start.month
    if first_day.day < start.day:
        months -= 1
    return max(months, 0)


def expected_features(exp):
    year, month = map(int, exp["month"].split("-"))
    days = calendar.monthrange(year, month)[1]
    first = dt.date(year, month, 1)
    next_first = dt.date(year + (month == 12), month % 12 + 1, 1)
    after_next = dt.date(next_first.year + (next_first.month == 12), next_first.month % 12 + 1, 1)
    now = parse_time(exp["now"])
    per = defaultdict(lambda: {"events": []})
    for e in exp["events"]:
        per[e["account"]]["events"].append(e)
    for account, contract in exp["contracts"].items():
        start = contract.get("relationship_start")
        end = contract.get("relationship_end")
        started = start is None or dt.date.fromisoformat(start) < next_first
        not_ended = end is None or dt.date.fromisoformat(end) >= first
        if started and not_ended:
            per[account]  # registered accounts in the month appear without events
    rows = {}
    for account, acc in per.items():
        events = acc["events"]
        calls = [e for e in events if e["source"] == "api_call"]
        contract = exp["contracts"].get(account)
        quota = contract.get("monthly_quota") if contract else None
        units = sum(e["data"]["units"] for e in calls)
        e4 = sum(1 for e in calls if 400 <= e["data"]["status"] <= 499)
        e5 = sum(1 for e in calls if 500 <= e["data"]["status"] <= 599)
        daily = [0] * days
        for e in calls:
            daily[parse_time(e["time"]).day - 1] += 1
        active = [e for e in events if e["source"] in ("api_call", "product")]
        outcome = None
        end = contract.get("relationship_end") if contract else None
        if end and dt.date.fromisoformat(end) < after_next and dt.date.fromisoformat(end) <= now.date():
            outcome = "churned"
        elif now.date() >= after_next:
            outcome = "retained"
        start = contract.get("relationship_start") if contract else None
        latencies = [e["data"]["latency_ms"] for e in calls]
        rows[exp["account_refs"][account]] = {
            "month_start": dt.datetime(year, month, 1, tzinfo=dt.timezone.utc),
            "account_ref": exp["account_refs"][account],
            "tenure_months": whole_months(dt.date.fromisoformat(start), first) if start else None,
            "monthly_quota": quota,
            "calls": len(calls),
            "units": units,
            "errors_4xx": e4,
            "errors_5xx": e5,
            "error_rate": (e4 + e5) / len(calls) if calls else None,
            "latency_p50_ms": percentile(latencies, 0.50),
            "latency_p95_ms": percentile(latencies, 0.95),
            "latency_p99_ms": percentile(latencies, 0.99),
            "calls_trend": trend(daily),
            "active_days": len({parse_time(e["time"]).day for e in active}),
            "active_users": len({e["user"] for e in active if e.get("user")}),
            "endpoint_templates": len({e["data"]["endpoint"] for e in calls}),
            "quota_share": units / quota if quota else None,
            "product_events": sum(1 for e in events if e["source"] == "product"),
            "marketing_touches": sum(1 for e in events if e["source"] == "marketing"),
            "tickets": sum(1 for e in events if e["source"] == "support_ticket"),
            "urgent_tickets": sum(1 for e in events if e["source"] == "support_ticket"
                                  and e["data"]["priority"] in ("high", "urgent")),
            "invoices": sum(1 for e in events if e["source"] == "billing"),
            "failed_payments": sum(1 for e in events if e["source"] == "billing"
                                   and e["data"]["status"] == "failed"),
            "outcome": outcome,
        }
    return rows


def expected_event(exp, e):
    d = e["data"]
    call = e["source"] == "api_call"
    ticket = e["source"] == "support_ticket"
    return {
        "ts": parse_time(e["time"]),
        "account_ref": exp["account_refs"][e["account"]],
        "subject_ref": exp["subject_refs"][e["user"]] if e.get("user") else None,
        "source": e["source"],
        "endpoint": d["endpoint"] if call else None,
        "method": d["method"] if call else None,
        "http_status": d["status"] if call else None,
        "latency_ms": d["latency_ms"] if call else None,
        "units": d["units"] if call else None,
        "ticket_priority": d["priority"] if ticket else None,
        "ticket_status": d["status"] if ticket else None,
        "billing_status": d["status"] if e["source"] == "billing" else None,
    }


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def main():
    directory = Path(sys.argv[1])
    exp = json.loads((directory / "expected.json").read_text())
    events = read_table(directory, "events", EVENT_SCHEMA)
    features = read_table(directory, "features", FEATURE_SCHEMA)

    want_events = sorted((expected_event(exp, e) for e in exp["events"]), key=lambda r: r["ts"])
    got_events = sorted(events, key=lambda r: r["ts"])
    if len(got_events) != len(want_events):
        fail(f"events: {len(got_events)} rows, expected {len(want_events)}")
    for got, want in zip(got_events, want_events):
        for column, value in want.items():
            if not same(got[column], value):
                fail(f"event at {want['ts']}: {column} = {got[column]!r}, expected {value!r}")

    want_features = expected_features(exp)
    got_features = {row["account_ref"]: row for row in features}
    if set(got_features) != set(want_features):
        fail(f"feature rows for {len(got_features)} accounts, expected {len(want_features)}")
    for ref, want in want_features.items():
        for column, value in want.items():
            if not same(got_features[ref][column], value):
                fail(f"account {ref}: {column} = {got_features[ref][column]!r}, expected {value!r}")
    for name in ("events", "features"):
        for path in sorted((directory / name).glob("part-*.parquet")):
            meta = pq.ParquetFile(path).metadata
            for g in range(meta.num_row_groups):
                for c in range(meta.num_columns):
                    codec = meta.row_group(g).column(c).compression
                    if codec != "SNAPPY":
                        fail(f"{path.name}: column {c} compressed with {codec}")
    print(f"checked {len(got_events)} event rows and {len(got_features)} feature rows "
          f"of {exp['tenant']} {exp['month']}: schema, counts and every value match")


if __name__ == "__main__":
    main()
