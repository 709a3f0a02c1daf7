"""Celery app and tasks for celery_bench.py; the worker imports it too.

Broker and result backend are the redis at $CELERY_BENCH_REDIS.
"""

import os
import re
import time
from collections import Counter

import redis
from celery import Celery

URL = os.environ["CELERY_BENCH_REDIS"]
app = Celery("celery_tasks", broker=URL, backend=URL)
# 50 producer threads each hold a broker connection while publishing
# (the default pool of 10 would queue them).
app.conf.broker_pool_limit = 64
app.conf.broker_connection_retry_on_startup = True
_redis = redis.Redis.from_url(URL)


@app.task
def noop(*args):
    return None


@app.task
def wordcount(text):
    counts = Counter(w.lower() for w in re.split(r"[^A-Za-z0-9]+", text) if w)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]


@app.task
def latency(sent):
    # Start minus send time on the producer's clock (same machine).
    _redis.rpush("bench:latency", time.time() - sent)
