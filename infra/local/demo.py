#!/usr/bin/env python3
"""Demo data for the local stack: about two months of a demo tenant's customers,
sent through the real API (contracts with PUT /v1/accounts/{id}, events with
POST /v1/events), so the dashboard shows living accounts.

Deterministic (a fixed seed) and relative to now: the last event is an hour
old. Stories: growing, steady, churning (with complaints), erroring and slow,
near or over quota, gone silent, unpaid, and unregistered newcomers; all five
sources. Users are pseudonymous ids (u-<account>-<n>); no personal data.

  python3 infra/local/demo.py --api http://127.0.0.1:3000 --key vk_demo_...

The key needs the admin (contracts) and ingest (events) scopes. Standard
library only.

  python3 infra/local/demo.py --dump demo.json --now 2026-12-01T10:00:00Z

writes the same accounts and events without sending them, with the incidents
each story holds and when they start (the ground truth the alert replay,
`vigil-replay`, scores the alert rules against).
"""
import argparse
import datetime as dt
import json
import random
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

STORIES = [
    # (story, count, plan, quota, tags)
    ("growing", 5, "growth", 6000, ["eu", "key"]),
    ("steady", 8, "starter", 3000, ["eu"]),
    ("churning", 4, "growth", 6000, ["us"]),
    ("erroring", 3, "scale", 20000, ["us", "key"]),
    ("near_quota", 3, "starter", 7000, ["eu"]),
    ("silent", 3, "starter", 3000, ["us"]),
    ("unpaid", 2, "growth", 6000, ["eu", "trial"]),
    ("newcomer", 2, None, None, []),
]
NAMES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell",
         "Cyberdyne", "Soylent", "Wonka", "Gringotts", "Oscorp", "Pied Piper", "Aperture", "Monarch",
         "Nakatomi", "Dunder", "Prestige", "Oceanic", "Sterling", "Wernham", "Krusty", "Duff",
         "Virtucon", "Gekko", "Bluth", "Massive", "Ollivander"]
ENDPOINTS = ["/v1/payments", "/v1/payments/:id", "/v1/refunds", "/v1/customers/:id", "/v1/invoices",
             "/v1/webhooks", "/v1/balance"]
FEATURES = ["dashboard", "export", "reports", "alerts", "team"]
DAYS = 61


def request(api, key, method, path, body):
    data = json.dumps(body).encode()
    req = urllib.request.Request(api + path, data=data, method=method,
                                 headers={"content-type": "application/json", "authorization": "Bearer " + key})
    for attempt in range(5):
        try:
            with urllib.request.urlopen(req, timeout=120) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            if error.code == 503 and attempt < 4:
                continue
            raise SystemExit(f"demo: {method} {path} answered {error.code}: {error.read()[:300]!r}")


def accounts():
    out, i = [], 0
    for story, count, plan, quota, tags in STORIES:
        for k in range(count):
            out.append({"id": f"{story.replace('_', '-')}-{k + 1}", "story": story, "plan": plan, "quota": quota,
                        "tags": tags, "name": f"{NAMES[i % len(NAMES)]} {'Ltd' if i % 2 else 'Inc'}"})
            i += 1
    return out


def calls_per_day(story, day, rng):
    """API calls of one day (day 0 is the oldest, DAYS - 1 yesterday or today)."""
    base = {"growing": 2 + day * 0.12, "steady": 4, "churning": 5 if day < 30 else max(0, 5 - (day - 30) * 0.25),
            "erroring": 5, "near_quota": 4, "silent": 3 if day < DAYS - 22 else 0, "unpaid": 3,
            "newcomer": 0 if day < DAYS - 10 else 3}[story]
    return max(0, int(round(base * rng.uniform(0.7, 1.3))))


def events_of(account, start, now, rng):
    story, acct = account["story"], account["id"]
    users = [f"u-{acct}-{n}" for n in range(rng.randint(3, 14))]
    events, seq = [], 0

    def add(time, source, data, user=None):
        nonlocal seq
        seq += 1
        event = {"id": f"{acct}-{seq}", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ"), "source": source,
                 "account": acct, "data": data}
        if user:
            event["user"] = user
        events.append(event)

    for day in range(DAYS + 1):
        date = start + dt.timedelta(days=day)
        # Today's activity an hour ago at most, so that the billing month has some on its 1st.
        busy = 10 if day < DAYS else max(0, min(10, now.hour - 1))
        # A day's activity in one busy hour: one ingestion transaction per
        # account-day keeps the load quick on the emulator; the dashboard shows days.
        for c in range(calls_per_day(story, day, rng)):
            time = date + dt.timedelta(hours=busy, minutes=rng.randint(0, 59), seconds=c % 60)
            failing = story == "erroring" and day >= DAYS - 14
            status = rng.choice([200, 200, 201, 204, 400, 404] if rng.random() < 0.08 else [200, 201])
            if failing and rng.random() < 0.2:
                status = rng.choice([500, 502, 503])
            latency = int(rng.lognormvariate(4.2, 0.5)) * (6 if failing else 1)
            units = rng.randint(10, 30) * (3 if story == "near_quota" else 1)
            add(time, "api_call", {"endpoint": rng.choice(ENDPOINTS[: 3 + sum(map(ord, acct)) % 5]), "method": "POST",
                                   "status": status, "latency_ms": latency, "units": units}, rng.choice(users))
        if calls_per_day(story, day, rng) and rng.random() < 0.5:
            add(date + dt.timedelta(hours=busy, minutes=5), "product",
                {"feature": rng.choice(FEATURES), "action": "open"}, rng.choice(users))
        if day % 14 == 3:
            add(date + dt.timedelta(hours=busy, minutes=1), "marketing", {"campaign": "newsletter", "channel": "email"})
        if date.day == 1 and story != "newcomer":
            status = "failed" if story == "unpaid" and day > 20 else "paid"
            add(date + dt.timedelta(hours=busy, minutes=2), "billing", {"invoice_id": f"INV-{acct}-{date:%Y%m}",
                "amount": {"starter": 49, "growth": 199, "scale": 999}[account["plan"]], "currency": "EUR",
                "status": status})
        complaining = story in ("churning", "erroring") and day >= DAYS - 20
        if (complaining and day % 4 == 0) or (rng.random() < 0.03 and story != "silent"):
            ticket = f"T-{acct}-{day}"
            add(date + dt.timedelta(hours=busy, minutes=3), "support_ticket",
                {"ticket_id": ticket, "priority": "high" if complaining else "normal", "status": "open"})
            if not complaining:
                add(date + dt.timedelta(hours=busy, minutes=50), "support_ticket",
                    {"ticket_id": ticket, "priority": "normal", "status": "solved"})
    return events


def stamp(time):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ")


def incidents(account, events, start):
    """What each story holds, and from when: the alert replay's ground truth."""
    acct, story = account["id"], account["story"]
    day = lambda n: stamp(start + dt.timedelta(days=n))
    out = []
    if story == "churning":
        out += [("churn", day(30)), ("complaints", day(DAYS - 20))]
    if story == "erroring":
        out += [("errors", day(DAYS - 14)), ("latency", day(DAYS - 14)), ("complaints", day(DAYS - 20))]
    if story == "silent":
        out += [("silence", day(DAYS - 22))]
    failed = [e["time"] for e in events if e["source"] == "billing" and e["data"]["status"] == "failed"]
    if failed:
        out.append(("payment_failed", min(failed)))
    if account["quota"]:
        # Each month's crossings of 80 % and 100 % of the quota, from the units sent.
        months = {}
        for e in sorted((e for e in events if e["source"] == "api_call"), key=lambda e: e["time"]):
            months.setdefault(e["time"][:7], []).append(e)
        for month, calls in months.items():
            used, crossed = 0, set()
            for e in calls:
                used += e["data"]["units"]
                for share, name in ((0.8, "quota_80"), (1.0, "quota_100")):
                    if used >= share * account["quota"] and name not in crossed:
                        crossed.add(name)
                        out.append((name, e["time"]))
            if used >= account["quota"]:
                out.append(("over_quota_month", max(month + "-01T00:00:00Z", stamp(start))))
    return [{"account": acct, "story": story, "incident": name, "start": at} for name, at in out]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api")
    parser.add_argument("--key", help="a key with the admin and ingest scopes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dump", help="write accounts, events and incidents to this file instead of sending them")
    parser.add_argument("--now", help="the demo's end (RFC 3339, default the current hour)")
    args = parser.parse_args()
    if not args.dump and not (args.api and args.key):
        parser.error("--api and --key, or --dump")
    rng = random.Random(args.seed)
    now = (dt.datetime.strptime(args.now, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc) if args.now
           else dt.datetime.now(dt.timezone.utc)).replace(minute=0, second=0, microsecond=0)
    start = (now - dt.timedelta(days=DAYS)).replace(hour=0)
    all_accounts = accounts()
    today = now.date()
    if args.dump:
        # The same draws in the same order as when sending: the same demo.
        out = {"now": stamp(now), "start": stamp(start), "accounts": [], "events": [], "incidents": []}
        since = {a["id"]: today - dt.timedelta(days=rng.randint(120, 900)) for a in all_accounts if a["plan"]}
        for a in all_accounts:
            events = [e for e in events_of(a, start, now, rng) if e["time"] < stamp(now)]
            out["accounts"].append({"id": a["id"], "story": a["story"], "plan": a["plan"], "monthly_quota": a["quota"],
                                    "tags": a["tags"], "relationship_start": since[a["id"]].isoformat() if a["plan"] else None})
            out["events"].extend(events)
            out["incidents"].extend(incidents(a, events, start))
        with open(args.dump, "w") as f:
            json.dump(out, f)
        print(f"    wrote {len(out['events'])} events of {len(all_accounts)} accounts and {len(out['incidents'])} incidents to {args.dump}")
        return
    for a in all_accounts:
        if a["plan"] is None:
            continue
        since = today - dt.timedelta(days=rng.randint(120, 900))
        body = {"name": a["name"], "plan": a["plan"], "monthly_quota": a["quota"], "tags": a["tags"],
                "relationship_start": since.isoformat()}
        request(args.api, args.key, "PUT", f"/v1/accounts/{a['id']}", body)
    registered = sum(1 for a in all_accounts if a["plan"])
    print(f"    registered {registered} contracts ({len(all_accounts) - registered} accounts stay unregistered)")
    batches = []
    for a in all_accounts:
        events = [e for e in events_of(a, start, now, rng) if e["time"] < now.strftime("%Y-%m-%dT%H:%M:%SZ")]
        batches.extend(events[i:i + 500] for i in range(0, len(events), 500))
    total = sum(len(b) for b in batches)
    sent = 0

    def post(batch):
        status, answer = request(args.api, args.key, "POST", "/v1/events", {"events": batch})
        if answer.get("accepted", 0) + answer.get("duplicates", 0) != len(batch):
            raise SystemExit(f"demo: a batch was not stored whole: {json.dumps(answer)[:300]}")
        return len(batch)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for n in pool.map(post, batches):
            sent += n
            print(f"\r    sent {sent}/{total} events of {len(all_accounts)} accounts", end="", flush=True)
    print()


if __name__ == "__main__":
    sys.exit(main())
