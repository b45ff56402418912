"""The queue commands a Postfix administrator expects, on a real queue with real ``pipeline`` processes.

``queue list`` shows each waiting recipient and why it waits (its last reply, like ``mailq``)
and a total line; ``queue cat ID`` prints the stored message (``postcat -q``); ``queue delete
--all [--state S]`` (``postsuper -d ALL deferred``); an unknown ID is an error naming it (exit 1);
a queue that does not exist is refused, not created; every action is an audit event naming the
message and the user; ``stats`` keeps counting a message that was deleted.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from pathlib import Path

from tests.core.helpers import make_message
from tests.peers.mailpipe import MailpipeProcess, pipeline_cmd, run_pipeline
from tests.peers.net import wait_until
from tests.peers.sink import RecordingSink
from tests.promises.operations.helpers import submit

from .helpers import base_config, store_messages, write

ME = os.environ.get("SUDO_USER") or getpass.getuser()


def test_list_shows_why_each_recipient_waits_and_a_total(tmp_path: Path) -> None:
    with RecordingSink("127.0.1.44") as sink:
        sink.behaviour.rcpt["slow@example.net"] = "450 4.2.1 mailbox busy, try later"
        config = base_config(tmp_path, [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}},
                                        {"retry": {"every": "1h", "expire_after": "2d"}}])
        gw = MailpipeProcess(tmp_path / "gw", config)
        with gw:
            mid = submit(gw, ["slow@example.net", "fast@example.net"], sender="alice@example.org")
            sink.wait_for(1)

            def listed() -> list[dict]:
                return gw.cli_json("queue", "list")

            wait_until(lambda: [m["recipients"] for m in listed()] == [{"deferred": 1, "delivered": 1}], 15,
                       "one recipient deferred", lambda: str(listed()))
            text = gw.cli("queue", "list").stdout.splitlines()
            [row] = listed()
            assert {r["address"]: (r["state"], r["last_reply"]) for r in row["recipient_list"]} == {
                "slow@example.net": ("deferred", row["recipient_list"][0]["last_reply"]),
                "fast@example.net": ("delivered", row["recipient_list"][1]["last_reply"])}
            assert "mailbox busy, try later" in row["recipient_list"][0]["last_reply"]
    assert text[0].split()[:3] == ["ID", "SIZE", "ARRIVED"]
    assert text[1].split()[0] == mid and text[1].endswith("<alice@example.org>")
    assert "<slow@example.net>  deferred, next attempt" in text[2]
    assert text[3].strip().startswith("(450 4.2.1") and "mailbox busy, try later" in text[3]
    assert not any("fast@example.net" in line for line in text), "a delivered recipient does not wait"
    assert text[-1] == (f"-- 1 message(s), {row['size']} bytes, 2 recipient(s) (1 deferred, 1 delivered) in "
                        f"{tmp_path / 'state' / 'queue.sqlite3'}")


def test_cat_prints_the_stored_message(tmp_path: Path) -> None:
    path = write(tmp_path / "mailpipe.yaml", base_config(tmp_path))
    [mid] = store_messages(path, [["bob@example.net"]])
    shown = run_pipeline(path, "queue", "cat", mid).stdout
    assert shown == make_message("admin 0").decode().replace("\r\n", "\n")
    raw = subprocess.run(pipeline_cmd("queue", "cat", mid, "--raw", "-c", str(path)), capture_output=True,
                         timeout=60, check=True).stdout
    assert raw == make_message("admin 0") and b"\r\n" in raw


def test_unknown_ids_exit_1_naming_them_and_the_known_ones_are_acted_on(tmp_path: Path) -> None:
    path = write(tmp_path / "mailpipe.yaml", base_config(tmp_path))
    first, second = store_messages(path, [["bob@example.net"], ["carol@example.net"]])
    for args in (["show", "NOSUCHID"], ["cat", "NOSUCHID"], ["hold", "NOSUCHID"], ["release", "NOSUCHID"],
                 ["retry", "NOSUCHID"], ["delete", "NOSUCHID"]):
        res = run_pipeline(path, "queue", *args, check=False)
        assert (res.returncode, res.stderr) == (1, "error: no message NOSUCHID in the queue\n"), args
    res = run_pipeline(path, "queue", "hold", first, "GONE1", "GONE2", check=False)
    assert res.returncode == 1 and res.stdout == "1 recipient(s) held\n"
    assert res.stderr.splitlines() == ["error: no message GONE1 in the queue", "error: no message GONE2 in the queue"]
    assert {m["id"]: m["recipients"] for m in json.loads(run_pipeline(path, "queue", "list", "--json").stdout)} == {
        first: {"held": 1}, second: {"pending": 1}}


def test_delete_all_of_one_state_and_the_audit_trail(tmp_path: Path) -> None:
    path = write(tmp_path / "mailpipe.yaml", base_config(tmp_path))
    ids = store_messages(path, [["a@example.net"], ["b@example.net"], ["c@example.net"]])
    assert "2 recipient(s) held" in run_pipeline(path, "queue", "hold", ids[0], ids[1]).stdout
    assert run_pipeline(path, "queue", "delete", "--all", "--state", "held").stdout == "2 message(s) deleted\n"
    assert [m["id"] for m in json.loads(run_pipeline(path, "queue", "list", "--json").stdout)] == [ids[2]]
    assert json.loads(run_pipeline(path, "queue", "delete", "--all", "--json").stdout) == {
        "command": "delete", "count": 1, "server_woken": False}
    assert run_pipeline(path, "queue", "list").stdout.startswith("queue is empty (")
    events = [e for e in json.loads(run_pipeline(path, "events", "--json").stdout) if e["kind"].startswith("cli.")]
    assert [(e["kind"], e["data"]) for e in events] == [
        ("cli.hold", {"message": ids[0], "user": ME}), ("cli.hold", {"message": ids[1], "user": ME}),
        ("cli.delete", {"message": ids[0], "user": ME}), ("cli.delete", {"message": ids[1], "user": ME}),
        ("cli.delete", {"message": ids[2], "user": ME})]
    assert events[2]["text"] == f"{ids[0]}: delete by {ME} (pipeline queue delete)"
    stats = json.loads(run_pipeline(path, "stats", "--json").stdout)
    assert (stats["received"], stats["queue_depth"]) == (3, 0), "deleted messages still count as received"
    for args in (["queue", "delete", "--state", "held"], ["queue", "delete", ids[0], "--all"]):
        assert run_pipeline(path, *args, check=False).returncode == 2, args


def test_a_queue_that_does_not_exist_is_refused_not_created(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    config["state_dir"] = str(tmp_path / "stat")  # a typo of the folder a server uses
    path = write(tmp_path / "mailpipe.yaml", config)
    missing = tmp_path / "stat" / "queue.sqlite3"
    for args in (["queue", "list"], ["queue", "show", "X"], ["queue", "cat", "X"], ["queue", "hold", "--all"],
                 ["log"], ["events"], ["stats"]):
        res = run_pipeline(path, *args, check=False)
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        assert res.stderr.startswith(f"error: queue {missing} does not exist"), res.stderr
        assert f"state_dir {tmp_path / 'stat'}" in res.stderr and res.stdout == ""
    assert not (tmp_path / "stat").exists()


def test_queue_commands_read_only_the_queue_keys(tmp_path: Path) -> None:
    """A mistake in the chain does not stop an administrator from reading and changing the queue."""
    good = base_config(tmp_path)
    path = write(tmp_path / "mailpipe.yaml", good)
    [mid] = store_messages(path, [["bob@example.net"]])
    broken = {**good, "chain": [{"smarthost": {"server": "smtp.isp.test", "port": "many"}}]}
    write(path, broken)
    assert run_pipeline(path, "check", check=False).returncode == 2
    assert [m["id"] for m in json.loads(run_pipeline(path, "queue", "list", "--json").stdout)] == [mid]
    assert "1 recipient(s) held" in run_pipeline(path, "queue", "hold", mid).stdout
    bad_queue = {**good, "queue": {"sqlite": {"busy_timout": "5s"}}}
    write(path, bad_queue)
    res = run_pipeline(path, "queue", "list", check=False)
    assert res.returncode == 2
    assert res.stderr == f"error: {path}: queue.sqlite.busy_timout: unknown key (did you mean 'busy_timeout'?)\n"
