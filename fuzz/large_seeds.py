#!/usr/bin/env python3
"""Writes seeds at the 64 KiB head limit into fuzz/seeds/<target>/.

libFuzzer seldom grows an input from a few hundred bytes to 64 KiB by
mutation alone; these give it heads just under, at and over the limit
(one long field value, many fields, a long target or reason) to mutate.
The corpora in fuzz/corpus/ stay small: the unit test that replays them
checks every prefix of an input.
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
LIMIT = 64 * 1024


def write(target, name, data):
    directory = os.path.join(HERE, "seeds", target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as out:
        out.write(data)


def value_to_fill(prefix, suffix, total):
    return prefix + b"a" * (total - len(prefix) - len(suffix)) + suffix


many_fields = b"".join(b"X-F%02d: %s\r\n" % (i, b"v" * 640) for i in range(99))

for total, label in [(LIMIT - 1, "under"), (LIMIT, "at"), (LIMIT + 1, "over")]:
    write("request_head", "long-value-" + label,
          value_to_fill(b"GET / HTTP/1.1\r\nHost: a\r\nX: ", b"\r\n\r\n", total))
    write("response_head", "long-value-" + label,
          value_to_fill(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: ", b"\r\n\r\n", total) + b"ok")
write("request_head", "many-fields",
      b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n" + many_fields + b"\r\nhello")
write("request_head", "long-target",
      value_to_fill(b"GET /", b" HTTP/1.1\r\nHost: a\r\n\r\n", LIMIT - 8))
write("response_head", "many-fields",
      b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + many_fields + b"\r\n2\r\nok\r\n0\r\n\r\n")
write("response_head", "long-reason",
      value_to_fill(b"HTTP/1.1 200 ", b"\r\nContent-Length: 0\r\n\r\n", LIMIT - 8))
