"""moto server, with DynamoDB transactions made atomic and affordable.

moto serves requests on threads and implements TransactWriteItems by deep-copying
the whole table once per action (100 copies of the table per transaction) and
restoring that copy if the transaction is cancelled. Under concurrency that is
wrong (a cancelled transaction restores a stale copy over other requests'
writes) and slow (seconds per transaction once a table holds a few thousand
items). AWS runs each request atomically, so here:

- every DynamoDB request runs under one lock (atomic, as on AWS);
- a transaction backs up only the items it touches and restores those if it is
  cancelled, instead of copying whole tables;
- a TransactWriteItems repeated with the same `ClientRequestToken` and the
  same items within 10 minutes answers the first one's success without
  applying it again (as on AWS; moto ignores the token, so an SDK retry of a
  transaction whose answer was late was cancelled as a duplicate); the same
  token with other items is refused (IdempotentParameterMismatchException);
- an S3 PutObject runs under a lock too, so a conditional put (`If-None-Match:
  *`, how the audit anchors are written) is atomic, as on AWS;
- a Query on a table's own key reads the queried partition only: moto sorts the
  whole table for every Query (about a second at 60,000 items), which made the
  dashboard's one query per account time out and be retried. Index queries are
  as moto does them.

Everything else is moto as installed. Usage: python emulator.py -H 127.0.0.1 -p PORT
(the arguments of moto_server). See docs/decisions/0011.
"""

import copy
import json
import threading
import time

from moto.dynamodb import models
from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.s3.responses import S3Response
from moto.server import main

_lock = threading.RLock()

_call_action = DynamoHandler.call_action


def _serialised_call_action(self):
    with _lock:
        return _call_action(self)


DynamoHandler.call_action = _serialised_call_action

# ClientRequestToken -> (the items it was sent with, until when, the answer).
_TOKEN_SECONDS = 600
_tokens = {}
_handler_transact = DynamoHandler.transact_write_items


class _IdempotentParameterMismatch(DynamodbException):
    def __init__(self):
        super().__init__(
            ERROR_TYPE_PREFIX + "IdempotentParameterMismatchException",
            message="The request uses the same client token as a previous, but non-identical request.",
        )


def _idempotent_transact(self):
    # Runs under _lock (call_action), so the check and the record are atomic.
    token = self.body.get("ClientRequestToken")
    if not token:
        return _handler_transact(self)
    now = time.monotonic()
    for stale in [t for t, (_, until, _) in _tokens.items() if until <= now]:
        del _tokens[stale]
    # Binary attributes arrive decoded as bytes: compared by their hex.
    items = json.dumps(self.body.get("TransactItems"), sort_keys=True, default=bytes.hex)
    seen = _tokens.get(token)
    if seen is not None:
        if seen[0] != items:
            raise _IdempotentParameterMismatch()
        return seen[2]
    answer = _handler_transact(self)
    _tokens[token] = (items, now + _TOKEN_SECONDS, answer)
    return answer


DynamoHandler.transact_write_items = _idempotent_transact

# The partition a base-table Query is reading (every DynamoDB request runs under _lock).
_partition = threading.local()
_all_items = Table.all_items
_table_query = Table.query


def _all_items_of_the_queried_partition(self):
    hash_key = getattr(_partition, "key", None)
    if hash_key is None or not self.range_key_attr:
        return _all_items(self)
    items = self.items.get(hash_key)
    return sorted(items.values(), key=lambda item: item.range_key) if items else []


def _query_one_partition(self, hash_key, *args, **kwargs):
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    if index_name is not None or hash_key is None:
        return _table_query(self, hash_key, *args, **kwargs)
    _partition.key = hash_key
    try:
        return _table_query(self, hash_key, *args, **kwargs)
    finally:
        _partition.key = None


Table.all_items = _all_items_of_the_queried_partition
Table.query = _query_one_partition

_s3_lock = threading.RLock()
_put_object = S3Response.put_object


def _serialised_put_object(self):
    with _s3_lock:
        return _put_object(self)


S3Response.put_object = _serialised_put_object


class _NoTableCopy:
    """Stands in for the `copy` module inside moto's transact_write_items."""

    @staticmethod
    def deepcopy(value, memo=None):
        return value


_transact_write_items = DynamoDBBackend.transact_write_items


def _item_key(backend, op_type, op):
    if op_type != "Put":
        return op["Key"]
    table = backend.get_table(op["TableName"])
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _transact_touched_items_only(self, transact_items):
    backups = []
    for action in transact_items:
        op_type, op = next(iter(action.items()))
        try:
            key = _item_key(self, op_type, op)
            current = self.get_item(op["TableName"], key)
        except Exception:  # moto raises its own validation error below
            continue
        old = copy.deepcopy(current.to_json()["Attributes"]) if current else None
        backups.append((op["TableName"], key, old))
    models.copy = _NoTableCopy
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table_name, key, old in reversed(backups):
            if old is None:
                if self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            else:
                self.put_item(table_name, old)
        raise
    finally:
        models.copy = copy


DynamoDBBackend.transact_write_items = _transact_touched_items_only

if __name__ == "__main__":
    main()
