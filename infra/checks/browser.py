"""The dashboard in headless Chromium (Debian's, driven by Playwright; nothing
downloads a browser): a wrong key is refused, the right one opens the accounts
table; sort and filter it, open an account, and check that each chart plotted
points. Screenshots go to OUT_DIR, and their paths are printed.

  python browser.py API READ_KEY OUT_DIR
"""
import json
import re
import sys
import urllib.request

from playwright.sync_api import sync_playwright

API, KEY, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHARTS = ["chart-usage", "chart-errors", "chart-latency", "chart-users"]


def check(condition, message):
    if not condition:
        raise SystemExit(f"browser check failed: {message}")


def api_json(path):
    req = urllib.request.Request(f"{API}{path}", headers={"authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req) as answer:
        return json.load(answer)


def api_accounts(query):
    return [a["account"] for a in api_json(f"/v1/accounts?{query}")["accounts"]]


def rows(page):
    return page.eval_on_selector_all(
        "#accounts tbody tr.row",
        """trs => trs.map(tr => ({account: tr.dataset.account, band: tr.dataset.band, calls: Number(tr.dataset.calls),
            score: Number(tr.querySelector('.chip').textContent),
            spark: Number(tr.querySelector('.spark').dataset.points || 0), canvas: !!tr.querySelector('.spark canvas')}))""")


def wait_list(page, before=None):
    page.wait_for_function("(before) => { const s = document.getElementById('status'); "
                           "return s.textContent === '' && document.getElementById('list-caption').textContent !== before; }",
                           arg=before)


def main():
    shots = []
    errors, foreign = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "401" not in m.text and "403" not in m.text else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(API) else None)

        page.goto(f"{API}/dashboard")
        page.wait_for_selector("#login:not([hidden])")
        page.fill("#key", "vk_demo_0000000000000000_" + "0" * 64)
        page.click("#key-form button")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('refused')")
        check(page.is_visible("#login"), "a wrong key leaves the login form up")

        page.fill("#key", KEY)
        page.click("#key-form button")
        page.wait_for_selector("#accounts tbody tr.row")
        wait_list(page)
        listed = rows(page)
        check(len(listed) >= 20, f"the first page lists at least 20 accounts ({len(listed)})")
        check(all(r["canvas"] and r["spark"] >= 7 for r in listed), "every row has a sparkline with a point per day")
        scores = [r["score"] for r in listed]
        check(scores == sorted(scores), f"worst health first by default: {scores}")
        shots.append(f"{OUT}/accounts.png")
        page.screenshot(path=shots[-1], full_page=True)

        caption = page.text_content("#list-caption")
        page.click("th[data-sort=calls]")
        wait_list(page, caption)
        calls = [r["calls"] for r in rows(page)]
        check(calls == sorted(calls, reverse=True), f"sorted by calls, most first: {calls}")
        check(page.get_attribute("th[data-sort=calls]", "aria-sort") == "descending", "the header says how it is sorted")
        caption = page.text_content("#list-caption")
        page.click("th[data-sort=calls]")
        wait_list(page, caption)
        calls = [r["calls"] for r in rows(page)]
        check(calls == sorted(calls), f"sorted by calls, fewest first: {calls}")

        caption = page.text_content("#list-caption")
        page.select_option("#band", "red")
        page.click("#filters button[type=submit]")
        wait_list(page, caption)
        red = rows(page)
        check(red and all(r["band"] == "red" for r in red), f"the red filter shows red accounts only: {red}")
        shots.append(f"{OUT}/accounts-red.png")
        page.screenshot(path=shots[-1], full_page=True)

        caption = page.text_content("#list-caption")
        page.select_option("#band", "")
        page.fill("#tag", "key")
        page.click("#filters button[type=submit]")
        wait_list(page, caption)
        tagged = sorted(r["account"] for r in rows(page))
        check(tagged and tagged == sorted(api_accounts("tag=key&limit=100")), f"the tag filter matches the API: {tagged}")

        # Open a red account that has calls.
        caption = page.text_content("#list-caption")
        page.fill("#tag", "")
        page.select_option("#band", "red")
        page.click("#filters button[type=submit]")
        wait_list(page, caption)
        target = next((r["account"] for r in rows(page) if r["calls"] > 0), None)
        check(target is not None, "a red account with calls")
        page.click(f"#accounts tr.row[data-account='{target}']")
        page.wait_for_selector("#account:not([hidden])")
        page.wait_for_function("ids => ids.every(id => Number(document.getElementById(id).dataset.points || 0) > 0)", arg=CHARTS)
        for chart in CHARTS:
            points = int(page.get_attribute(f"#{chart}", "data-points"))
            check(points > 0 and page.locator(f"#{chart} canvas").count() == 1, f"{chart} plotted {points} points on a canvas")
        check(page.locator("#penalties li").count() >= 1, "the health explanation lists what pulled the score down")
        check(page.locator("#quota-meter").count() == 1, "the quota gauge is shown")
        check(page.locator("#endpoints tbody tr").count() >= 1, "top endpoints are listed")
        check(page.locator("#events tbody tr").count() >= 1, "recent support and billing events are listed")
        check(target in page.text_content("#account-title"), "the account page names the account")
        # The red account's alerts (the demo replays two months of evaluations):
        # listed as the API answers them, and each marked on the calls chart.
        fired = api_json(f"/v1/alerts?account={target}&limit=100")["alerts"]
        check(len(fired) >= 1, f"alerts fired on {target}: {len(fired)}")
        check(page.locator("#alerts li.alert").count() == min(len(fired), 50), "the account page lists its alerts")
        marks = int(page.get_attribute("#chart-usage", "data-alert-marks") or 0)
        check(marks >= 1, f"the calls chart marks when alerts fired ({marks})")
        shots.append(f"{OUT}/account.png")
        page.screenshot(path=shots[-1], full_page=True)
        page.emulate_media(media="print")
        shots.append(f"{OUT}/account-print.png")
        page.screenshot(path=shots[-1], full_page=True)
        page.emulate_media(media="screen")

        text = page.content()
        check(not re.search(r"\bu-[a-z-]+-\d+-\d+\b", text), "no user id on the page")
        check(page.evaluate("localStorage.length") == 0, "nothing in localStorage")
        check(page.evaluate("sessionStorage.length") == 1, "the key is in sessionStorage only")
        browser.close()
    check(not foreign, f"no request leaves the origin: {foreign[:3]}")
    check(not errors, f"no console error: {errors[:3]}")
    print("    browser check passed; screenshots:")
    for shot in shots:
        print(f"      {shot}")


if __name__ == "__main__":
    main()
