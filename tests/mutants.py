"""Each guard of the store and the delivery path, removed in turn: the test named beside it
must then fail. `python -m tests.mutants` (or `make mutants`) prints one line a guard and
exits 1 if any removal went unnoticed. It edits the source in place and restores it after
each run, so run it on a clean tree, not while other tests run.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    guard: str
    path: str
    original: str
    mutated: str
    test: str


MUTANTS = [
    Mutant(
        "a task of a model not learned yet costs no more than the loop, give or take one",
        "tracker/core/polling.py",
        "        if registered_at is not None:\n",
        "        if False:\n",
        "tests/test_estimates.py::test_a_model_not_learned_yet_never_costs_more_than_the_loop",
    ),
    Mutant(
        "a narrow window is polled a window gap apart",
        "tracker/core/estimates.py",
        "if window_gap > 0 and last - tail <= WINDOW_POLLS * window_gap:",
        "if False:",
        "tests/test_estimates.py::test_a_narrow_window_is_polled_evenly_a_window_gap_apart",
    ),
    Mutant(
        "a task still in a step is not polled before what follows the step",
        "tracker/core/estimates.py",
        "    if len(overs) >= MIN_SAMPLES and at < ends[-1]:\n",
        "    if False:\n",
        "tests/test_estimates.py::test_a_task_still_in_a_step_is_not_polled_before_what_follows_the_step",
    ),
    Mutant(
        "past its earliest plausible end a task waits no longer than the loop's gap",
        "tracker/core/estimates.py",
        "if longest is not None and now >= tail:",
        "if longest is not None and now >= min(probes):",
        "tests/test_estimates.py::test_past_its_earliest_plausible_end_a_task_waits_no_longer_than_the_gap",
    ),
    Mutant(
        "past a window, polls keep its gap a few more times",
        "tracker/core/estimates.py",
        "probes += [last + i * window_gap for i in range(1, PAST_WINDOW_POLLS + 1)]",
        "probes += []",
        "tests/test_estimates.py::test_past_a_narrow_window_polls_keep_its_gap_a_few_more_times",
    ),
    Mutant(
        "a floor reaches no further ahead than the task's age",
        "tracker/core/estimates.py",
        "reach = min(FLOOR_REACH, _floor_ratio(sorted(overs)))",
        "reach = _floor_ratio(sorted(overs))",
        "tests/test_estimates.py::test_a_floor_reaches_no_further_ahead_than_the_tasks_age",
    ),
    Mutant(
        "a task is polled when half its model's tasks had ended, if its step's window opens later",
        "tracker/core/estimates.py",
        "    return min(at, by_total)\n",
        "    return at\n",
        "tests/test_estimates.py::test_a_task_is_polled_when_half_the_tasks_that_lasted_as_long_had_ended",
    ),
    Mutant(
        "a task half whose longer peers ended within the loop's gap, or older than every one"
        " its model saw end, waits no longer than that gap",
        "tracker/core/estimates.py",
        "        return at if young_gap is None else min(at, now + gap)\n",
        "        return at\n",
        "tests/test_estimates.py::"
        "test_a_task_half_whose_longer_peers_ended_within_the_gap_waits_no_longer_than_it",
    ),
    Mutant(
        "a floor taught by few samples stands below the lowest",
        "tracker/core/estimates.py",
        "    if len(ordered) >= FLOOR_SAMPLES:\n",
        "    if True:\n",
        "tests/test_estimates.py::test_a_floor_taught_by_few_samples_stands_below_the_lowest",
    ),
    Mutant(
        "a process caches what a bounded number of models taught",
        "tracker/store/learning.py",
        "if len(self._cache) >= CACHED_MODELS:",
        "if False:",
        "tests/test_store_guards.py::test_a_process_keeps_what_a_bounded_number_of_models_taught",
    ),
    Mutant(
        "a page of a client's tasks looks at a bounded number of them",
        "tracker/store/index.py",
        "        while looked < scan:\n",
        "        while True:\n",
        "tests/test_store_guards.py::test_a_page_of_a_clients_tasks_looks_at_a_bounded_number_of_them",
    ),
    Mutant(
        "a poll claim looks behind one client's backlog",
        "tracker/store/scripts/polls.py",
        "if #claimed < #due then\n  local later",
        "if false then\n  local later",
        "tests/test_store_guards.py::test_one_clients_backlog_of_due_polls_never_holds_back_anothers",
    ),
    Mutant(
        "an ended delivery drops the body kept for its attempts",
        "tracker/store/scripts/deliveries.py",
        "  redis.call('DEL', KEYS[5])\n",
        "",
        "tests/test_worker_inprocess.py::test_a_final_event_is_stored_once_and_sent_as_it_was_made",
    ),
    Mutant(
        "a redelivered final event, its kept body gone, is built again from its task",
        "tracker/store/scripts/deliveries.py",
        "    if not body then\n",
        "    if false then\n",
        "tests/test_worker_inprocess.py::test_a_final_event_is_stored_once_and_sent_as_it_was_made",
    ),
    Mutant(
        "a callback URL with a space is refused",
        "tracker/net/guard.py",
        "if any(ch.isspace() or not ch.isprintable() for ch in url):",
        "if False:",
        "tests/test_callbacks.py::"
        "test_a_url_no_receiver_could_have_is_refused_even_where_private_ones_are_allowed",
    ),
    Mutant(
        "an attempt is recorded only over what its sender read",
        "tracker/store/scripts/deliveries.py",
        "if state ~= 'pending' or attempts ~= tonumber(ARGV[2]) or round ~= tonumber(ARGV[3]) then",
        "if false then",
        "tests/test_origins.py::test_a_stale_attempt_never_moves_a_delivery_back",
    ),
    Mutant(
        "a redeliver starts a new round",
        "tracker/store/deliveries.py",
        'pipe.hincrby(self.keys.delivery(delivery_id), "round", 1)',
        "pass",
        "tests/test_origins.py::test_redeliver_during_an_attempt_is_not_swallowed_by_it",
    ),
    Mutant(
        "only a tracking task can end",
        "tracker/store/polls.py",
        "if task is None or task.state is not TaskState.TRACKING:\n            return None",
        "if task is None:\n            return None",
        "tests/test_store_guards.py::test_a_task_ends_once_so_its_outcome_makes_its_events_once",
    ),
    Mutant(
        "a quiet poll records only while the task is tracked",
        "tracker/store/scripts/polls.py",
        "if redis.call('HGET', KEYS[1], 'state') ~= 'tracking' then return 0 end\n"
        "if ARGV[3] == '1'",
        "if ARGV[3] == '1'",
        "tests/test_store_guards.py::test_a_stale_poll_never_brings_a_cancelled_task_back",
    ),
    Mutant(
        "a task tracked again stays due for a stale poller",
        "tracker/store/scripts/polls.py",
        "if redis.call('HGET', KEYS[1], 'state') == 'tracking' then return 0 end\n"
        "return redis.call('ZREM', KEYS[2], ARGV[1])",
        "return redis.call('ZREM', KEYS[2], ARGV[1])",
        "tests/test_api.py::test_a_task_registered_again_after_a_cancel_stays_due_for_a_stale_poller",
    ),
    Mutant(
        "a pending delivery is never dropped from the due set",
        "tracker/store/scripts/deliveries.py",
        "if state == 'pending' then return 0 end",
        "",
        "tests/test_store_guards.py::test_a_pending_delivery_is_never_forgotten_or_skipped_once_ended",
    ),
    Mutant(
        "only a pending delivery is skipped",
        "tracker/store/scripts/deliveries.py",
        "if state ~= 'pending' then return 0 end\n"
        "if okey then redis.call('ZREM', string.format(ARGV[3], okey), ARGV[1]) end\n"
        "redis.call('HSET', KEYS[1], 'state', 'skipped')",
        "redis.call('HSET', KEYS[1], 'state', 'skipped')",
        "tests/test_store_guards.py::test_a_pending_delivery_is_never_forgotten_or_skipped_once_ended",
    ),
    Mutant(
        "a re-registered delivery starts fresh (no old expiry)",
        "tracker/store/deliveries.py",
        "pipe.delete(space.delivery(d.id), space.delivery_attempts(d.id), "
        "space.delivery_body(d.id))",
        "pass",
        "tests/test_origins.py::test_registering_again_after_a_410_starts_a_live_delivery_with_no_old_expiry",
    ),
    Mutant(
        "an attempt claimed without a slot takes one, within its origin's limit",
        "tracker/store/scripts/origins.py",
        "if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and\n"
        "   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then",
        "if false then",
        "tests/test_origins.py::test_a_busy_origin_puts_a_delivery_off_without_an_attempt",
    ),
    Mutant(
        "the claim takes at most an origin's slots",
        "tracker/store/scripts/deliveries.py",
        "elseif redis.call('ZCARD', inflight) >= slots then",
        "elseif false then",
        "tests/test_fair_delivery.py::"
        "test_a_quiet_clients_webhooks_arrive_while_a_noisy_clients_black_hole_is_open",
    ),
    Mutant(
        "failures in a row open an origin",
        "tracker/store/scripts/origins.py",
        "if failures < tonumber(ARGV[4]) or open_until > now then return 0 end",
        "if true then return 0 end",
        "tests/test_origins.py::test_the_breaker_opens_probes_and_closes",
    ),
    Mutant(
        "an attempt has one deadline, answer included",
        "workers/deliver.py",
        "async with asyncio.timeout(time_limit):",
        "async with asyncio.timeout(None):",
        "tests/test_origins.py::test_slow_name_resolution_is_cut_off_by_the_attempts_deadline",
    ),
    Mutant(
        "an IP literal in a callback is checked though nothing is resolved",
        "tracker/net/callbacks.py",
        "if is_ip_literal(host) and not self.allow([host]):",
        "if False:",
        "tests/test_callbacks.py::test_an_ip_literal_is_checked_though_no_name_is_resolved",
    ),
    Mutant(
        "a resolved name reaches only the addresses the guard allows",
        "tracker/net/guarded.py",
        "allowed = self.allow(await self.resolver(host, port))",
        "allowed = await self.resolver(host, port)",
        "tests/test_callbacks.py::test_a_name_rebound_to_a_private_address_is_refused_at_delivery",
    ),
    Mutant(
        "upstream text that is not Unicode is repaired",
        "tracker/core/jsontext.py",
        'return "".join(REPLACEMENT if "\\ud800" <= c <= "\\udfff" else c for c in text)',
        "return text",
        "tests/adversarial/test_upstream_answers.py::test_a_lone_surrogate_from_upstream_is_replaced",
    ),
    Mutant(
        "site-local IPv6 is not public",
        "tracker/core/addresses.py",
        "if address not in _GLOBAL_UNICAST_V6 or any(address in n for n in _BLOCKED_V6):",
        "if any(address in n for n in _BLOCKED_V6):",
        "tests/test_callbacks.py::test_is_public",
    ),
    Mutant(
        "a client holds at most its share of a task",
        "tracker/core/limits.py",
        "if mine >= limits.per_task_per_client:",
        "if False:",
        "tests/adversarial/test_limits.py::test_one_client_holds_at_most_its_share_of_a_tasks_subscriptions",
    ),
    Mutant(
        "a worker tells time by Redis's clock, not its own",
        "tracker/store/clock.py",
        "self.offset = seconds + micros / 1e6 - (before + after) / 2",
        "self.offset = 0.0",
        "tests/faults/test_clocks.py::test_workers_a_minute_ahead_and_behind_keep_to_the_fleets_clock",
    ),
    Mutant(
        "a delivery whose attempt is in flight is not claimed beside it",
        "tracker/store/scripts/deliveries.py",
        "  if redis.call('ZSCORE', inflight, id) then",
        "  if false then",
        "tests/faults/test_crashes.py::"
        "test_redeliver_during_an_attempt_sends_again_right_after_it_never_beside_it",
    ),
    Mutant(
        "under the shared key a task belongs to its first registrant",
        "tracker/store/registration.py",
        '        return owner not in {"", client_id}',
        "        return False",
        "tests/test_upstream_keys.py::"
        "test_under_the_shared_key_a_task_belongs_to_the_client_that_registered_it_first",
    ),
    Mutant(
        "a task is tracked per (upstream key, task id)",
        "tracker/core/ids.py",
        'return f"{upstream_key}~{task_id}" if upstream_key else task_id',
        "return task_id",
        "tests/test_upstream_keys.py::"
        "test_two_clients_with_their_own_keys_on_one_task_id_each_see_only_their_own",
    ),
    Mutant(
        "an Idempotency-Key answers only the request it was first used for",
        "tracker/api/idempotency.py",
        "    if earlier.request != request:",
        "    if False:",
        "tests/test_videos.py::"
        "test_an_idempotency_key_on_a_registration_answers_the_first_answer_again",
    ),
    Mutant(
        "a retry registers the task a crash left created, never creating again",
        "tracker/api/videos.py",
        '        if earlier.state == "created" and earlier.task_id:',
        "        if False:",
        "tests/test_videos.py::"
        "test_a_crash_between_create_and_registration_is_finished_by_the_retry",
    ),
    Mutant(
        "the claim never puts a delivery off past its window",
        "tracker/store/scripts/deliveries.py",
        "redis.call('ZADD', KEYS[1], math.min(open_until, expires), id)",
        "redis.call('ZADD', KEYS[1], open_until, id)",
        "tests/test_origins.py::"
        "test_a_delivery_behind_an_origin_that_stays_open_is_claimed_to_end_when_its_window_does",
    ),
    Mutant(
        "slots and breakers are per client and origin",
        "tracker/core/origins.py",
        'hashlib.sha256(f"{client_id}\\n{origin}".encode())',
        "hashlib.sha256(origin.encode())",
        "tests/test_origins.py::test_one_clients_failures_never_open_the_origin_for_another",
    ),
    Mutant(
        "a client holds a bounded number of streams and waits",
        "tracker/store/scripts/feed.py",
        "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and\n"
        "   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then",
        "if false then",
        "tests/test_events.py::test_streams_and_waits_per_client_are_bounded",
    ),
    Mutant(
        "a revoked client's stream ends",
        "tracker/api/events.py",
        "                    if fresh is None or fresh.revoked:\n                        return\n",
        "                    if fresh is None:\n                        return\n",
        "tests/test_events.py::test_a_stream_ends_once_its_client_is_revoked",
    ),
    Mutant(
        "a create is counted before it reaches QuickRouter",
        "tracker/api/videos.py",
        "        await admit(self.request, self.client.id)\n",
        "",
        "tests/test_videos.py::test_creates_are_metered_before_they_reach_quickrouter",
    ),
    Mutant(
        "a client keeps a bounded number of QuickRouter keys",
        "tracker/store/scripts/clients.py",
        "   redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then",
        "   false then",
        "tests/test_upstream_keys.py::test_a_client_keeps_a_bounded_number_of_keys",
    ),
    Mutant(
        "every dashboard form carries the session's CSRF token",
        "tracker/ui/session.py",
        "isinstance(sent, str) and isinstance(expected, str) and "
        "hmac.compare_digest(sent, expected)",
        "True",
        "tests/test_ui.py::test_signing_in_exchanges_the_key_for_a_strict_http_only_cookie",
    ),
    Mutant(
        "a client sees only its own subscriptions to a task others track too",
        "tracker/store/tasks.py",
        "mine = [s for s in await self.subscriptions_of(task) if s.client_id == client_id]",
        "mine = list(await self.subscriptions_of(task))",
        "tests/test_end_to_end.py::test_two_subscriptions_share_one_poller",
    ),
    Mutant(
        "a status change some subscription asked for is never recorded quietly",
        "tracker/store/scripts/polls.py",
        "if ARGV[3] == '1' and redis.call('HGET', KEYS[1], 'status_events') ~= '0' "
        "then return 2 end",
        "",
        "tests/test_store_guards.py::"
        "test_a_status_change_some_subscription_asked_for_makes_its_event",
    ),
    Mutant(
        "a registration is written only over the task as it was read",
        "tracker/store/scripts/tasks.py",
        "if state ~= ARGV[2] or subs ~= ARGV[3] then return 0 end",
        "",
        "tests/test_store_guards.py::test_registrations_made_at_once_each_keep_their_subscription",
    ),
    Mutant(
        "registrations made at once never pass the live-task limit",
        "tracker/store/scripts/tasks.py",
        "if redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 0\n"
        "    and redis.call('SCARD', KEYS[6]) >= tonumber(ARGV[6]) then return -1 end",
        "",
        "tests/test_store_guards.py::"
        "test_registrations_made_at_once_never_pass_the_live_task_limit",
    ),
    Mutant(
        "a client's attempts in flight are capped across all its origins",
        "tracker/store/scripts/deliveries.py",
        "elseif sending and redis.call('ZCARD', sending) >= per_client then",
        "elseif false then",
        "tests/adversarial/test_tenants.py::"
        "test_many_dead_origins_of_one_client_never_hold_up_anothers_webhook",
    ),
    Mutant(
        "a stalled stream reader's connection is aborted, not left flushing",
        "tracker/api/events.py",
        "            abort_connection(scope)\n",
        "",
        "tests/adversarial/test_tenants.py::"
        "test_a_stalled_stream_reader_is_cut_off_and_holds_nothing_after",
    ),
    Mutant(
        "a stream's cursor past the end of the feed is clamped",
        "tracker/api/events.py",
        "cursor = clamped(start, last) if start else last",
        "cursor = start or last",
        "tests/adversarial/test_tenants.py::"
        "test_a_forged_cursor_is_clamped_and_never_slows_another_stream",
    ),
    Mutant(
        "workers stop claiming when Redis lost the tracker's epoch",
        "workers/claimer.py",
        'if not await self.ctx["store"].identity.verify():',
        "if False:",
        "tests/adversarial/test_tenants.py::"
        "test_a_redis_that_lost_its_data_is_refused_loudly_until_started_over",
    ),
    Mutant(
        "the API refuses while Redis lost the tracker's epoch",
        "tracker/api/auth.py",
        "    await store.identity.require()",
        "    pass",
        "tests/adversarial/test_tenants.py::"
        "test_a_redis_that_lost_its_data_is_refused_loudly_until_started_over",
    ),
    Mutant(
        "the sweeper trims the open origins",
        "workers/sweep.py",
        "        await shard.origins.forget_closed(now)\n",
        "",
        "tests/adversarial/test_tenants.py::"
        "test_after_the_retention_only_the_documented_long_lived_keys_are_left",
    ),
    Mutant(
        "the sweeper trims each client's task index",
        "tracker/store/scripts/tasks.py",
        "  if redis.call('EXISTS', string.format(ARGV[4], found[i])) == 0 then",
        "  if false then",
        "tests/adversarial/test_tenants.py::"
        "test_after_the_retention_only_the_documented_long_lived_keys_are_left",
    ),
    Mutant(
        "a task is polled with another live subscriber's copy of its key",
        "workers/poll.py",
        "    for client_id in live:",
        "    for client_id in ():",
        "tests/adversarial/test_tenants.py::"
        "test_one_client_dropping_a_shared_key_fails_nothing_of_anothers",
    ),
    Mutant(
        "a client's tasks are found by the keys it registered with, not only those it holds",
        "tracker/store/scripts/tasks.py",
        "local names = redis.call('ZRANGE', KEYS[3], 0, -1)",
        "local names = {}",
        "tests/adversarial/test_tenants.py::"
        "test_one_client_dropping_a_shared_key_fails_nothing_of_anothers",
    ),
    Mutant(
        "a duplicate of an Idempotency-Key in flight is refused, not run beside it",
        "tracker/api/tasks.py",
        "                    raise idempotency.still_running()\n",
        "                    pass\n",
        "tests/adversarial/test_tenants.py::"
        "test_a_duplicate_of_a_request_in_flight_is_409_and_touches_nothing",
    ),
    Mutant(
        "revoking a client cancels its subscriptions",
        "tracker/store/shard.py",
        "                await self.tasks.cancel(client_id, tracking_id.decode(), now)",
        "                pass",
        "tests/adversarial/test_tenants.py::"
        "test_revoking_a_client_stops_everything_done_on_its_behalf",
    ),
    Mutant(
        "a wait ends when its client is revoked",
        "tracker/api/events.py",
        "                if fresh is None or fresh.revoked:  # the caller answers it 401\n"
        "                    return\n",
        "",
        "tests/adversarial/test_tenants.py::"
        "test_revoking_a_client_stops_everything_done_on_its_behalf",
    ),
    Mutant(
        "signing out ends the session in Redis",
        "tracker/ui/session.py",
        "        await request.app.state.store.sessions.close(session_id)\n",
        "",
        "tests/adversarial/test_tenants.py::"
        "test_dashboard_sessions_end_for_good_and_guessing_is_limited",
    ),
    Mutant(
        "an operator session is bound to the operator token it signed in with",
        "tracker/ui/session.py",
        "if mark and hmac.compare_digest(found.operator_mark, mark):",
        "if True:",
        "tests/adversarial/test_tenants.py::"
        "test_dashboard_sessions_end_for_good_and_guessing_is_limited",
    ),
    Mutant(
        "failed sign-ins are limited per address",
        "tracker/ui/pages.py",
        "if await store.sessions.sign_ins_refused(address, now, limit):",
        "if False:",
        "tests/adversarial/test_tenants.py::"
        "test_dashboard_sessions_end_for_good_and_guessing_is_limited",
    ),
    Mutant(
        "the registration check reads a callback URL as the sender does",
        "tracker/net/guard.py",
        "    if not _read_alike(url, parsed):",
        "    if False:",
        "tests/adversarial/test_input.py::test_hostile_callback_urls_get_a_422",
    ),
    Mutant(
        "a copy refuses an announced length past the cap before reading",
        "workers/copy.py",
        "verdict = storage.length_refused(download.length, max_bytes)",
        "verdict = None",
        "tests/test_storage.py::test_a_content_length_of_5_gib_is_refused_before_a_byte_is_read",
    ),
    Mutant(
        "a result link (or a redirect) to a private literal is refused",
        "tracker/net/downloads.py",
        "if is_ip_literal(target.raw_host) and not self.allow([target.raw_host]):",
        "if False:",
        "tests/adversarial/test_storage_guard.py::test_a_result_link_to_a_private_place_is_refused",
    ),
    Mutant(
        "a copy taken over ends the multipart upload the dead worker left open",
        "workers/copy.py",
        "            await target.clean(key)  # what a worker killed mid-copy left open\n",
        "",
        "tests/faults/test_copies.py::"
        "test_a_worker_killed_mid_upload_leaves_one_object_and_no_open_upload",
    ),
    Mutant(
        "one client has at most its cap of copies in flight",
        "tracker/store/scripts/copies.py",
        "if room[owner] > 0 or",
        "if true or",
        "tests/test_storage.py::test_one_clients_copies_never_hold_up_anothers",
    ),
    Mutant(
        "an attempt keeps at most the first 4 KiB of an answer's body",
        "tracker/core/delivery.py",
        'return raw[:MAX_BODY_KEPT].decode("utf-8", "replace")',
        'return raw.decode("utf-8", "replace")',
        "tests/test_attempts.py::test_what_an_attempt_keeps_of_an_answer_is_bounded",
    ),
    Mutant(
        "an attempt keeps at most 32 of an answer's headers",
        "tracker/core/delivery.py",
        "        if len(kept) == MAX_HEADERS_KEPT:\n            break\n",
        "",
        "tests/test_attempts.py::test_what_an_attempt_keeps_of_an_answer_is_bounded",
    ),
    Mutant(
        "a subscription cannot set a header the tracker or the connection owns",
        "tracker/core/headers.py",
        'if name in REFUSED or name.startswith("webhook-"):',
        "if False:",
        "tests/test_attempts.py::test_headers_the_tracker_or_the_connection_own_are_refused",
    ),
    Mutant(
        "another client's delivery answers as one that does not exist",
        "tracker/api/deliveries.py",
        "if found is None or sub is None or sub.client_id != client_id:",
        "if found is None or sub is None:",
        "tests/test_attempts.py::test_each_attempt_keeps_the_request_and_the_answer",
    ),
    Mutant(
        "a delivery that ends dead is noted for its delivery.exhausted event",
        "tracker/store/scripts/deliveries.py",
        "  if ARGV[5] == 'dead' and ARGV[9] ~= '' then",
        "  if false then",
        "tests/test_operations.py::test_a_noted_event_left_by_a_crash_is_announced_once",
    ),
    Mutant(
        "an operational event is announced once, by whoever takes its note",
        "tracker/store/scripts/feed.py",
        "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end",
        "",
        "tests/test_operations.py::test_a_noted_event_left_by_a_crash_is_announced_once",
    ),
    Mutant(
        "a delivery that ends no longer counts as waiting for its destination",
        "tracker/store/scripts/deliveries.py",
        "  if okey then redis.call('ZREM', string.format(ARGV[11], okey), ARGV[1]) end\n",
        "",
        "tests/test_destinations.py::test_a_destination_failing_without_a_break_is_disabled_until_enabled",
    ),
]


def caught(mutant: Mutant) -> bool:
    """Apply the mutant, run its test, restore the file; whether the test failed."""
    path = ROOT / mutant.path
    source = path.read_text()
    if source.count(mutant.original) != 1:
        raise SystemExit(f"{mutant.path}: the guard of {mutant.guard!r} is not found once")
    try:
        path.write_text(source.replace(mutant.original, mutant.mutated))
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", mutant.test],
            cwd=ROOT, capture_output=True, check=False,
        )  # fmt: skip
    finally:
        path.write_text(source)
    return run.returncode != 0


def main() -> int:
    missed = 0
    for mutant in MUTANTS:
        ok = caught(mutant)
        missed += not ok
        print(f"{'caught' if ok else 'MISSED':7} {mutant.guard}  ({mutant.test.split('::')[-1]})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
