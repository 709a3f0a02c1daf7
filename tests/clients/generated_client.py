"""Calls every operation of a jobhost server through a Python client that
openapi-python-client generated from the server's own OpenAPI document.

usage: generated_client.py BASE_URL ADMIN_TOKEN COMPONENT_PATH
Exits non-zero, naming the operation, if any call fails or is left out.
"""

import io
import pkgutil
import sys
import time

import jobhost_client.api as api
from jobhost_client import AuthenticatedClient
from jobhost_client.api.admin import (create_token, get_tenant, list_tenants, list_tokens,
                                      revoke_token, set_tenant)
from jobhost_client.api.jobs import (broadcast_job, cancel_job, clone_job, enqueue_batch,
                                     enqueue_job, follow_job,
                                     get_job, job_logs, list_jobs, relabel_job, remove_job,
                                     retry_job)
from jobhost_client.api.plugins import (get_plugin, list_plugins, plugin_versions, remove_plugin,
                                        remove_plugin_version, replace_plugin, upload_plugin)
from jobhost_client.api.schedules import (create_schedule, delete_schedule, get_schedule,
                                          list_schedules, pause_schedule, resume_schedule)
from jobhost_client.api.workflows import (cancel_workflow, follow_workflow, get_workflow,
                                          list_workflows, retry_workflow, submit_workflow)
from jobhost_client.api.queues import (change_queue, clear_lock, get_queue, list_locks,
                                       list_queues, pause_queue, resume_queue)
from jobhost_client.api.system import health, me, metrics, openapi_document, stats
from jobhost_client.api.workers import command_workers, list_workers, ping_worker, set_worker_mode
from jobhost_client.models import (BatchRequest, Command, JobRequest, ResubmitRequest, NewToken, QueueChange, Quotas,
                                   Relabel, ScheduleRequest, WorkflowRequest)
from jobhost_client.types import File

base, token, component_path = sys.argv[1:4]
client = AuthenticatedClient(base_url=base, token=token, timeout=60.0)
called = set()


def call(module, *args, expect=(200, 201, 202, 204), **kwargs):
    response = module.sync_detailed(*args, client=client, **kwargs)
    name = module.__name__.rsplit(".", 1)[-1]
    assert response.status_code in expect, f"{name}: {response.status_code} {response.content[:300]!r}"
    called.add(name)
    return response.parsed


def job(body):
    return call(enqueue_job, body=JobRequest.from_dict(body))


def wait(job_id, state):
    for _ in range(1200):
        current = call(get_job, job_id).state.value
        if current == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {state}")


component = open(component_path, "rb").read()
call(health)
call(openapi_document)
who = call(me)
assert who.role.value == "host_admin" and who.tenant == "default", who
for upload in (upload_plugin, replace_plugin):
    view = call(upload, "acme.greeter", body=File(payload=io.BytesIO(component), file_name="c.wasm"))
    assert view.name == "acme.greeter" and view.digest.startswith("sha256:"), view
assert any(p.name == "acme.greeter" for p in call(list_plugins).plugins)
call(get_plugin, "acme.greeter")
versions = call(plugin_versions, "acme.greeter").versions
assert [v.current for v in versions] == [True], versions
call(remove_plugin_version, "acme.greeter", versions[0].digest, expect=(409,))

first = job({"job": "acme.greeter", "args": {"name": "Ada"}, "tags": ["generated"]})
wait(first.id, "completed")
assert call(list_jobs, search="acme").total >= 1
renamed = call(relabel_job, str(first.id), body=Relabel.from_dict({"name": "renamed"}))
assert renamed.name == "renamed", renamed
assert any("Ada" in line.message for line in call(job_logs, str(first.id)).logs)
follow_job.sync_detailed(str(first.id), client=client)
called.add("follow_job")
call(retry_job, str(first.id), body=ResubmitRequest.from_dict({}))
call(clone_job, str(first.id), body=ResubmitRequest.from_dict({"args": {"name": "Bob"}}))

steps = [{"step": "a", "job": "acme.greeter", "args": {"name": "W"}},
         {"step": "b", "job": "acme.greeter", "depends_on": ["a"],
          "args": {"name": {"$result": "a", "pointer": "/greeting"}}}]
flow = call(submit_workflow, body=WorkflowRequest.from_dict({"name": "pair", "steps": steps}))
flow_id = str(flow.to_dict()["id"])
for _ in range(1200):
    if call(get_workflow, flow_id).to_dict()["state"] == "completed":
        break
    time.sleep(0.05)
else:
    raise AssertionError(f"workflow {flow_id} never completed")
assert call(list_workflows).to_dict()["total"] >= 1
follow_workflow.sync_detailed(flow_id, client=client)
called.add("follow_workflow")
call(cancel_workflow, flow_id)
call(retry_workflow, flow_id, expect=(409,))

schedule = call(create_schedule, body=ScheduleRequest.from_dict(
    {"cron": "0 3 * * *", "timezone": "Asia/Tokyo", "job": {"job": "acme.greeter", "args": {"name": "S"}}}))
schedule_id = str(schedule.to_dict()["id"])
assert any(str(s["id"]) == schedule_id for s in call(list_schedules).to_dict()["schedules"])
assert call(get_schedule, schedule_id).to_dict()["next_runs"][0].endswith("T03:00:00+09:00")
call(pause_schedule, schedule_id)
call(resume_schedule, schedule_id)
call(delete_schedule, schedule_id)
call(remove_job, str(first.id))

long = job({"job": "examples.sleep", "args": {"seconds": 60}, "lock": "printer"})
wait(long.id, "running")
assert [lock.name for lock in call(list_locks).locks] == ["printer"]
call(cancel_job, str(long.id))
wait(long.id, "cancelled")
holder = job({"job": "examples.sleep", "args": {"seconds": 60}, "lock": "scanner"})
wait(holder.id, "running")
call(clear_lock, "scanner")

call(list_queues)
call(get_queue, "default")
call(change_queue, "default", body=QueueChange.from_dict({"concurrency": 4}))
call(pause_queue, "default")
call(resume_queue, "default")

worker = call(list_workers).workers[0].id
call(set_worker_mode, worker, "pause")
call(set_worker_mode, worker, "resume")
call(command_workers, body=Command.from_dict({"action": "pause"}))
call(command_workers, body=Command.from_dict({"action": "resume"}))
assert call(ping_worker, worker).slots > 0
sent = call(broadcast_job, body=JobRequest.from_dict({"job": "examples.hello", "args": {"name": "all"}}))
assert len(sent.jobs) == 1
batch = call(enqueue_batch, body=BatchRequest.from_dict({"jobs": [{"job": "examples.hello", "args": {"name": "b"}}]}))
assert batch.created == 1 and batch.results[0].status == 202

made = call(create_token, body=NewToken.from_dict({"name": "ci", "tenant": "acme", "role": "submitter"}))
assert made.secret, "the secret is shown once"
call(list_tokens)
call(revoke_token, made.id)
call(set_tenant, "acme", body=Quotas.from_dict({"max_running": 5, "max_queued": 50}))
call(list_tenants)
call(get_tenant, "acme")
call(stats)
metrics.sync_detailed(client=client)
called.add("metrics")
call(remove_plugin, "acme.greeter")

generated = {
    name
    for tag in pkgutil.iter_modules(api.__path__)
    for _, name, _ in pkgutil.iter_modules([f"{api.__path__[0]}/{tag.name}"])
}
missed = generated - called
assert not missed, f"operations not called: {sorted(missed)}"
print(f"generated client: {len(called)} operations called")
