"""The clustered setups: Galera multi-primary, a PostgreSQL hot standby, PgBouncer.

These run only with CONCURRENCY_DB=galera, postgresql-replica or pgbouncer, after
``python3 dev.py cluster up``; every connection is a real one to a real node.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, connections, transaction
from django.test import TransactionTestCase

from concurrency.exceptions import BulkUpdateConflictError, RecordModifiedError, WriteConflictError
from concurrency.http import make_etag
from concurrency.retry import retry_on_conflict
from concurrency.signals import conflict_detected
from concurrency.transaction import atomic
from tests.demo.models import Article, Counter, PlainCounter, Stock
from tests.support.races import run_together

galera = pytest.mark.skipif(
    settings.DB != "galera", reason="needs the Galera cluster (CONCURRENCY_DB=galera)"
)
replica = pytest.mark.skipif(
    settings.DB != "postgresql-replica", reason="needs the hot standby (CONCURRENCY_DB=postgresql-replica)"
)
pgbouncer = pytest.mark.skipif(
    settings.DB != "pgbouncer", reason="needs PgBouncer (CONCURRENCY_DB=pgbouncer)"
)

WAIT = 60  # seconds: bound for every barrier and join, generous under load


# --- MariaDB Galera: two writers on two nodes --------------------------------------


@galera
@pytest.mark.race
class GaleraTests(TransactionTestCase):
    databases = {"default", "node2", "node3"}

    def setUp(self) -> None:
        self.article = Article.objects.create(title="original")

    def write_through(self, alias: str, title: str, barrier: threading.Barrier) -> int:
        """Save ``title`` through node ``alias`` in a transaction that commits after the other's UPDATE."""
        with atomic(using=alias):
            article = Article.objects.using(alias).get(pk=self.article.pk)
            article.title = title
            article.save(using=alias)
            barrier.wait(WAIT)
        return article.version

    def test_nodes_are_distinct_members_of_one_cluster(self) -> None:
        seen = set()
        for alias in ("default", "node2", "node3"):
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT @@wsrep_node_name, @@port")
                seen.add(cursor.fetchone())
                cursor.execute("SHOW STATUS LIKE 'wsrep_cluster_size'")
                assert cursor.fetchone()[1] == "3"
        assert len(seen) == 3

    def test_two_writers_through_two_nodes_exactly_one_wins(self) -> None:
        barrier = threading.Barrier(2)
        first, second = run_together(
            lambda: self.write_through("default", "node1", barrier),
            lambda: self.write_through("node2", "node2", barrier),
        )
        outcomes = [first, second]
        won = [r for r in outcomes if isinstance(r, int)]
        lost = [r for r in outcomes if isinstance(r, RecordModifiedError)]
        assert len(won) == 1 and len(lost) == 1, outcomes
        # The loser was refused by certification at COMMIT: reported as a conflict.
        error = lost[0]
        assert isinstance(error, WriteConflictError)
        assert error.target.pk == self.article.pk
        assert error.version == 1
        assert error.db_version == 2
        assert isinstance(error.__cause__, DatabaseError)
        row = Article.objects.get(pk=self.article.pk)
        assert row.version == 2
        assert row.title == ("node1" if first == 2 else "node2")
        # Every node holds the winner.
        for alias in ("node2", "node3"):
            assert Article.objects.using(alias).get(pk=self.article.pk).title == row.title

    def test_stale_save_through_another_node_is_refused_with_db_version(self) -> None:
        stale = Article.objects.using("node3").get(pk=self.article.pk)
        self.article.title = "node1"
        self.article.save()
        stale.title = "node3"
        with pytest.raises(RecordModifiedError) as caught:
            stale.save(using="node3")
        assert not isinstance(caught.value, WriteConflictError)  # an ordinary CAS refusal
        assert (caught.value.version, caught.value.db_version) == (1, 2)
        assert Article.objects.using("node2").get(pk=self.article.pk).title == "node1"

    def test_retry_on_conflict_retries_a_certification_failure(self) -> None:
        counter = Counter.objects.create(name="hot")
        barrier = threading.Barrier(2)
        node1_committed = threading.Event()
        attempts: list[int] = []
        signalled: list[Any] = []
        refused: list[BaseException] = []

        def remember(sender: Any, **kwargs: Any) -> None:
            signalled.append((kwargs["version"], kwargs["db_version"]))

        def on_node1() -> None:
            with atomic():
                row = Counter.objects.get(pk=counter.pk)
                row.value += 1
                row.save()
                barrier.wait(WAIT)
            node1_committed.set()

        @retry_on_conflict(using="node2", attempts=5, delay=0.01)
        def increment_on_node2() -> None:
            row = Counter.objects.using("node2").get(pk=counter.pk)
            attempts.append(row.version)
            row.value += 1
            row.save(using="node2")
            if len(attempts) == 1:
                # Both UPDATEs matched version 1, each on its own node; node 1 commits
                # first, so this COMMIT fails certification.
                barrier.wait(WAIT)
                assert node1_committed.wait(WAIT)

        def on_node2() -> None:
            try:
                increment_on_node2()
            except RecordModifiedError as error:  # pragma: no cover - reported below
                refused.append(error)
                raise

        conflict_detected.connect(remember, weak=False)
        try:
            results = run_together(on_node1, on_node2)
        finally:
            conflict_detected.disconnect(remember)
        assert results == [None, None], results
        # Refused once at version 1 (node 1 had committed 2), then retried from version 2.
        assert attempts == [1, 2]
        assert signalled == [(1, 2)]
        row = Counter.objects.get(pk=counter.pk)
        assert (row.value, row.version) == (2, 3)

    def test_contention_over_three_nodes_loses_nothing(self) -> None:
        counter = Counter.objects.create(name="hot")
        aliases = ["default", "node2", "node3"] * 2
        increments = 15

        def work(alias: str) -> Callable[[], int]:
            @retry_on_conflict(using=alias, attempts=200, delay=0.002, max_delay=0.05)
            def increment() -> None:
                row = Counter.objects.using(alias).get(pk=counter.pk)
                row.value += 1
                row.save(using=alias)

            def run() -> int:
                for _ in range(increments):
                    increment()
                return increments

            return run

        results = run_together(*(work(alias) for alias in aliases))
        assert results == [increments] * len(aliases)
        row = Counter.objects.get(pk=counter.pk)
        assert row.value == increments * len(aliases)
        assert row.version == increments * len(aliases) + 1


# --- PostgreSQL: reads from a lagging hot standby -------------------------------------


@replica
class ReplicaTests(TransactionTestCase):
    databases = {"default", "replica"}

    def setUp(self) -> None:
        self.article = Article.objects.create(title="original", body="text")
        # Committed with synchronous_commit = remote_apply: the standby has it.
        assert Article.objects.get(pk=self.article.pk)._state.db == "replica"

    @contextmanager
    def lagging_replica(self) -> Iterator[None]:
        """Pause the standby's replay: it keeps serving reads, as of the pause."""
        with connection.cursor() as cursor:
            # This session's commits must not wait for the paused standby.
            cursor.execute("SET synchronous_commit = local")
        with connections["replica"].cursor() as cursor:
            cursor.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            with connections["replica"].cursor() as cursor:
                cursor.execute("SELECT pg_wal_replay_resume()")
            with connection.cursor() as cursor:
                cursor.execute("RESET synchronous_commit")

    def write_on_primary(self, title: str) -> None:
        with transaction.atomic():
            article = Article.objects.get(pk=self.article.pk)
            assert article._state.db == "default"  # pinned to the primary in a transaction
            article.title = title
            article.save()

    def test_stale_read_from_replica_is_refused_on_primary(self) -> None:
        with self.lagging_replica():
            self.write_on_primary("newer")
            stale = Article.objects.get(pk=self.article.pk)
            assert (stale._state.db, stale.title, stale.version) == ("replica", "original", 1)
            stale.title = "stale"
            with pytest.raises(RecordModifiedError) as caught:
                stale.save()
            # The version in the error was read from the primary, not the replica.
            assert (caught.value.version, caught.value.db_version) == (1, 2)
            with transaction.atomic():
                row = Article.objects.get(pk=self.article.pk)
            assert (row.title, row.version) == ("newer", 2)

    def test_retry_rereads_from_the_primary(self) -> None:
        with self.lagging_replica():
            self.write_on_primary("newer")
            stale = Article.objects.get(pk=self.article.pk)
            attempts = []

            @retry_on_conflict(attempts=3, delay=0)
            def rename() -> None:
                attempts.append(stale.version)
                stale.body = "mine"
                stale.save()

            rename()
            # Refused with the replica's version 1, then refreshed from the primary (2).
            assert attempts == [1, 2]
            assert stale.version == 3
            assert Article.objects.using("replica").get(pk=self.article.pk).version == 1  # still lagging

            @retry_on_conflict(attempts=3, delay=0)
            def reread() -> int:
                article = Article.objects.get(pk=self.article.pk)  # in the attempt's transaction
                assert article._state.db == "default"
                article.body += "!"
                article.save()
                return article.version

            assert reread() == 4
        with transaction.atomic():
            row = Article.objects.get(pk=self.article.pk)
        assert (row.title, row.body, row.version) == ("newer", "mine!", 4)

    def test_form_compares_the_version_on_the_primary(self) -> None:
        from tests.forms.test_forms import ArticleForm, errors_text, posted

        with self.lagging_replica():
            self.write_on_primary("newer")
            with transaction.atomic():
                current = Article.objects.get(pk=self.article.pk)
            stale = Article.objects.get(pk=self.article.pk)
            assert stale.version == 1
            # The user saw version 2 (from the primary); the view loaded the row from the replica.
            form = ArticleForm(posted(ArticleForm(instance=current), body="edited"), instance=stale)
            assert form.is_valid(), form.errors
            form.save()
            # Someone who saw version 1 is refused, even though the replica still says 1.
            old = Article.objects.get(pk=self.article.pk)
            assert old.version == 1
            form = ArticleForm(posted(ArticleForm(instance=old), body="lost"), instance=old)
            assert not form.is_valid()
            assert "Someone else changed" in errors_text(form)
        with transaction.atomic():
            row = Article.objects.get(pk=self.article.pk)
        assert (row.title, row.body, row.version) == ("newer", "edited", 3)

    def put(self, url: str, title: str, etag: str) -> Any:
        return self.client.put(
            url, json.dumps({"title": title}), content_type="application/json", headers={"If-Match": etag}
        )

    def test_http_compares_if_match_with_the_primary(self) -> None:
        for url in (f"/plain/articles/{self.article.pk}/", f"/api/articles/{self.article.pk}/"):
            with self.subTest(url=url), self.lagging_replica():
                stale_etag = make_etag(Article.objects.get(pk=self.article.pk))
                self.write_on_primary(f"newer {url}")
                with transaction.atomic():
                    current = Article.objects.get(pk=self.article.pk)
                assert Article.objects.get(pk=self.article.pk).version < current.version  # lagging
                # The current ETag is accepted although the view read the row from the replica.
                response = self.put(url, "mine", make_etag(current))
                assert response.status_code == 200, response.content
                # The stale one is refused, although it matches what the replica holds.
                response = self.put(url, "lost", stale_etag)
                assert response.status_code == 412, response.content
                with transaction.atomic():
                    row = Article.objects.get(pk=self.article.pk)
                assert (row.title, row.version) == ("mine", current.version + 1)

    def test_async_view_on_a_lagging_replica_refuses_rather_than_guesses(self) -> None:
        url = f"/plain/async/articles/{self.article.pk}/"
        with self.lagging_replica():
            self.write_on_primary("newer")
            with transaction.atomic():
                current = Article.objects.get(pk=self.article.pk)
            # The async view cannot re-read from the primary: the current tag gets a 412 ...
            response = self.put(url, "mine", make_etag(current))
            assert response.status_code == 412, response.content
            # ... and the stale one, which the replica still matches, is refused by the UPDATE.
            response = self.put(url, "lost", make_etag(Article.objects.get(pk=self.article.pk)))
            assert response.status_code == 412, response.content
        with transaction.atomic():
            row = Article.objects.get(pk=self.article.pk)
        assert (row.title, row.version) == ("newer", 2)


# --- PgBouncer in transaction pooling ---------------------------------------------------


SESSION_STATE = re.compile(r"^\s*(SET|RESET|PREPARE|DEALLOCATE|DECLARE|LISTEN|LOCK)\b|set_config\(", re.I)


@pytest.mark.postgresql
class NoSessionStateTests(TransactionTestCase):
    """Every write path runs in single transactions, with no state left in the session."""

    def test_write_paths_issue_no_session_statements(self) -> None:
        statements: list[str] = []

        def record(execute: Any, sql: str, *args: Any) -> Any:
            statements.append(sql)
            return execute(sql, *args)

        article = Article.objects.create(title="a")
        stale = Article.objects.get(pk=article.pk)
        with connection.execute_wrapper(record):
            article.title = "b"
            article.save()
            stale.title = "c"
            with pytest.raises(RecordModifiedError):
                stale.save()
            with pytest.raises(RecordModifiedError):
                stale.delete()

            @retry_on_conflict(delay=0)
            def again() -> None:
                stale.title = "d"
                stale.save()

            again()
            stock = [Stock.objects.create(name=f"s{n}") for n in range(3)]
            late = Stock.objects.get(pk=stock[0].pk)
            stock[0].quantity = 5
            stock[0].save()
            late.quantity = 7
            with pytest.raises(BulkUpdateConflictError):
                Stock.objects.bulk_update([late, stock[1]], ["quantity"])
            assert Stock.objects.filter(quantity__gt=0).update(quantity=1) == 1
            assert self.client.get(f"/plain/articles/{article.pk}/").status_code == 200
        assert statements
        offending = [sql for sql in statements if SESSION_STATE.search(sql)]
        assert offending == []


@pgbouncer
class PgBouncerTests(TransactionTestCase):
    def backend_pids(self, count: int) -> set[int]:
        pids = set()
        for _ in range(count):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pids.add(cursor.fetchone()[0])
        return pids

    def test_one_connection_is_served_by_several_server_sessions(self) -> None:
        # The premise of this leg: consecutive transactions of one Django connection
        # run in different PostgreSQL sessions, so no session state can carry over.
        pids = set()
        deadline = time.monotonic() + WAIT
        while len(pids) < 2 and time.monotonic() < deadline:
            pids |= self.backend_pids(4)
        assert len(pids) >= 2

    def test_conflict_and_retry_across_server_sessions(self) -> None:
        article = Article.objects.create(title="a")
        stale = Article.objects.get(pk=article.pk)
        article.title = "b"
        article.save()
        stale.title = "c"
        with pytest.raises(RecordModifiedError) as caught:
            stale.save()
        assert (caught.value.version, caught.value.db_version) == (1, 2)

        @retry_on_conflict(delay=0)
        def rename() -> None:
            stale.title = "c"
            stale.save()

        rename()
        row = Article.objects.get(pk=article.pk)
        assert (row.title, row.version) == ("c", 3)

    def test_contention_through_pgbouncer_loses_nothing(self) -> None:
        counter = Counter.objects.create(name="hot")
        threads, increments = 8, 15  # more clients than the pool has server connections

        @retry_on_conflict(attempts=200, delay=0.002, max_delay=0.05)
        def increment() -> None:
            row = Counter.objects.get(pk=counter.pk)
            row.value += 1
            row.save()

        def run() -> int:
            for _ in range(increments):
                increment()
            return increments

        assert run_together(*([run] * threads)) == [increments] * threads
        row = Counter.objects.get(pk=counter.pk)
        assert (row.value, row.version) == (threads * increments, threads * increments + 1)


# --- Kill a node in the middle of a contention run ----------------------------------------


def _ledger_run(
    aliases: list[str], increments: int, disrupt: Callable[[], None], after: int
) -> dict[str, Any]:
    """Workers increment one counter and, in the same transaction, insert a ledger row.

    ``disrupt`` runs once ``after`` increments were acknowledged. A worker whose
    connection fails reconnects and carries on; an increment whose COMMIT failed
    without an answer is "unknown" (it may or may not have committed).
    """
    counter = Counter.objects.create(name="hot")
    acked: list[str] = []
    unknown: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()
    disrupted = threading.Event()

    def work(worker: int, alias: str) -> Callable[[], int]:
        @retry_on_conflict(using=alias, attempts=500, delay=0.002, max_delay=0.05)
        def increment(token: str) -> None:
            row = Counter.objects.using(alias).get(pk=counter.pk)
            row.value += 1
            row.save(using=alias)
            PlainCounter.objects.using(alias).create(name=token)

        def run() -> int:
            done = 0
            n = 0
            deadline = time.monotonic() + WAIT * 3
            while done < increments and time.monotonic() < deadline:
                n += 1
                token = f"w{worker}-{n}"
                try:
                    increment(token)
                except RecordModifiedError:
                    raise
                except (DatabaseError, InterfaceError) as exc:
                    # The node went away: the increment may or may not have committed.
                    with lock:
                        unknown.append(token)
                        failures.append(f"{alias}: {exc}")
                    connections[alias].close()
                    if alias != "default" and disrupted.is_set() and alias_down(alias):
                        return done  # this worker's node is gone; the survivors go on
                    time.sleep(0.2)
                    continue
                done += 1
                with lock:
                    acked.append(token)
                    if len(acked) == after and not disrupted.is_set():
                        disrupted.set()
                        threading.Thread(target=disrupt).start()
            return done

        return run

    results = run_together(*(work(n, alias) for n, alias in enumerate(aliases)))
    assert all(isinstance(r, int) for r in results), results
    assert disrupted.is_set()
    # This thread's connections (to every alias) may have been cut too.
    connections.close_all()
    value = Counter.objects.get(pk=counter.pk).value
    ledger = set(PlainCounter.objects.values_list("name", flat=True))
    return {
        "results": results,
        "acked": acked,
        "unknown": unknown,
        "failures": failures,
        "value": value,
        "ledger": ledger,
    }


def alias_down(alias: str) -> bool:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
        return False
    except (DatabaseError, InterfaceError):
        connections[alias].close()
        return True


def _assert_nothing_lost_or_doubled(run: dict[str, Any]) -> None:
    acked, ledger = set(run["acked"]), run["ledger"]
    print(  # shown with pytest -s: the figures of docs/guide/cluster.rst
        f"kill-a-node: acknowledged {len(acked)}, unanswered {len(run['unknown'])}, "
        f"ledger rows {len(ledger)}, counter {run['value']}, per worker {run['results']}"
    )
    assert len(acked) == len(run["acked"])
    # Every acknowledged increment is there; the counter moved exactly once per ledger row.
    assert acked <= ledger
    assert run["value"] == len(ledger)
    # Anything beyond the acknowledged ones is an increment whose COMMIT got no answer.
    assert ledger - acked <= set(run["unknown"])


@galera
class GaleraKillNodeTests(TransactionTestCase):
    databases = {"default", "node2", "node3"}

    def test_stopping_a_node_mid_run_loses_and_doubles_nothing(self) -> None:
        from tests.support import cluster

        increments = 20
        try:
            run = _ledger_run(
                ["default", "node2", "node3"] * 2,
                increments,
                disrupt=lambda: cluster.galera_stop(3, hard=True),
                after=25,
            )
        finally:
            connections.close_all()
            if not cluster.galera_running(3):
                cluster.galera_start(3)
        _assert_nothing_lost_or_doubled(run)
        results = run["results"]
        # The workers on the two surviving nodes finished all their increments.
        assert [results[n] for n in (0, 1, 3, 4)] == [increments] * 4
        # Those on the stopped node stopped with it.
        assert results[2] < increments and results[5] < increments
        assert run["failures"]


@pgbouncer
class PgBouncerRestartTests(TransactionTestCase):
    def test_restarting_pgbouncer_mid_run_loses_and_doubles_nothing(self) -> None:
        from tests.support import cluster

        def restart() -> None:
            cluster.pgbouncer_stop(hard=True)
            time.sleep(0.5)
            cluster.pgbouncer_up()

        increments = 20
        try:
            run = _ledger_run(["default"] * 6, increments, disrupt=restart, after=25)
        finally:
            connections.close_all()
            cluster.pgbouncer_up()
        _assert_nothing_lost_or_doubled(run)
        assert run["results"] == [increments] * 6
        assert run["failures"], "the restart broke the workers' connections"
