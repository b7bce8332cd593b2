"""ingest/mqtt_client.py on the real Mosquitto: with reads in 64 KiB blocks, every QoS 1 message
arrives exactly once and in order, whether many fit in one block or one spans several blocks."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tocsin.ingest.mqtt_client import READ_BLOCK_BYTES, BufferedClient

pytestmark = pytest.mark.integration


def test_every_message_once_and_in_order_across_block_boundaries(services: dict[str, str]) -> None:
    port = int(services["TOCSIN_MQTT_PORT"])
    run = uuid.uuid4().hex[:8]
    topic = f"test/buffered/{run}"
    # 3,000 small messages (hundreds per block), then a few larger than a whole block, then small again
    sizes = [20 + i % 50 for i in range(3000)] + [READ_BLOCK_BYTES + 17, 3 * READ_BLOCK_BYTES, 1] + [30] * 500
    payloads = [f"{i:06d}".encode().ljust(n, b"x") for i, n in enumerate(sizes)]
    got: list[bytes] = []
    done, subscribed = threading.Event(), threading.Event()

    def on_message(c: mqtt.Client, _ud: object, msg: mqtt.MQTTMessage) -> None:
        got.append(bytes(msg.payload))
        c.ack(msg.mid, msg.qos)
        if len(got) >= len(payloads):
            done.set()

    sub = BufferedClient(CallbackAPIVersion.VERSION2, client_id=f"buf-{run}", protocol=mqtt.MQTTv5, manual_ack=True)
    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{run}", protocol=mqtt.MQTTv5)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    try:
        assert subscribed.wait(10), "not subscribed"
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        infos = [pub.publish(topic, p, qos=1) for p in payloads]
        deadline = time.monotonic() + 60
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert done.wait(max(0.1, deadline - time.monotonic())), f"{len(got)} of {len(payloads)} arrived"
        time.sleep(0.5)  # nothing more may come
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.disconnect()
        sub.loop_stop()
    assert got == payloads


def test_batch_path_acks_with_one_write_and_the_broker_redelivers_only_the_unacked(
    services: dict[str, str],
) -> None:
    """``on_publish_batch`` + ``ack_many``: every message once and in order; after a reconnect of the
    persistent session the broker redelivers exactly the messages left unacknowledged."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from tocsin.ingest.mqtt_client import FastClient, Publish

    port = int(services["TOCSIN_MQTT_PORT"])
    run = uuid.uuid4().hex[:8]
    topic = f"test/fast/{run}"
    n, unacked = 2000, 10  # fewer unacked than the broker's in-flight window (20), or delivery stalls
    payloads = [f"{i:06d}".encode().ljust(20 + i % 300, b"y") for i in range(n)] + [b"z" * (READ_BLOCK_BYTES + 5)]
    total = len(payloads)
    lock = threading.Lock()

    def connect(got: list[Publish], enough: threading.Event, ack: bool) -> FastClient:
        c = FastClient(CallbackAPIVersion.VERSION2, client_id=f"fast-{run}", protocol=mqtt.MQTTv5, manual_ack=True)
        subscribed = threading.Event()

        def on_batch(batch: list[Publish]) -> None:
            with lock:
                got.extend(batch)
                if ack:  # all but the last `unacked` messages of the first session
                    c.ack_many([p.mid for p in batch if p.payload[:6].isdigit() and int(p.payload[:6]) < n - unacked])
                if len(got) >= (total if ack else unacked + 1):
                    enough.set()

        c.on_publish_batch = on_batch
        c.on_subscribe = lambda *_a: subscribed.set()
        c.on_connect = lambda cl, *_a: cl.subscribe(topic, qos=1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 60
        c.connect("127.0.0.1", port, clean_start=False, properties=props)
        c.loop_start()
        assert subscribed.wait(10), "not subscribed"
        return c

    first: list[Publish] = []
    done = threading.Event()
    sub = connect(first, done, ack=True)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pubf-{run}", protocol=mqtt.MQTTv5)
    try:
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        infos = [pub.publish(topic, p, qos=1) for p in payloads]
        deadline = time.monotonic() + 60
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert done.wait(max(0.1, deadline - time.monotonic())), f"{len(first)} of {total} arrived"
        time.sleep(0.5)  # let the last PUBACKs go out
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.disconnect()
        sub.loop_stop()
    assert [p.payload for p in first] == payloads
    assert all(p.qos == 1 and p.topic == topic.encode() for p in first)

    again: list[Publish] = []
    redelivered = threading.Event()
    sub = connect(again, redelivered, ack=False)
    try:
        assert redelivered.wait(20), f"{len(again)} redelivered"
        time.sleep(0.5)  # nothing more may come
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert [p.payload for p in again] == payloads[n - unacked :]


def test_an_oversize_message_through_the_broker_is_skipped_reported_and_acknowledged(services: dict[str, str]) -> None:
    """A 3 MB message between small ones, through Mosquitto, to a client with a 100 KB limit: it comes
    out as one ``Oversize`` (topic, packet id, size, first bytes), the small ones whole and in order, and
    once acknowledged the broker does not send it again."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from tocsin.ingest.mqtt_client import FastClient, Oversize, Publish

    port = int(services["TOCSIN_MQTT_PORT"])
    run = uuid.uuid4().hex[:8]
    topic = f"test/oversize/{run}"
    payloads = [b"small-1", b"B" * 3_000_000, b"small-2"]
    got: list[Publish | Oversize] = []
    done, subscribed = threading.Event(), threading.Event()

    def connect() -> FastClient:
        c = FastClient(CallbackAPIVersion.VERSION2, client_id=f"big-{run}", protocol=mqtt.MQTTv5, manual_ack=True)

        def on_batch(batch: list[Publish]) -> None:
            got.extend(batch)
            c.ack_many([p.mid for p in batch], c.connection)
            if len(got) >= 3:
                done.set()

        def on_oversize(big: Oversize) -> None:
            got.append(big)
            c.ack_many([big.mid], c.connection)

        c.max_publish_bytes = 100_000
        c.on_publish_batch = on_batch
        c.on_oversize = on_oversize
        c.on_subscribe = lambda *_a: subscribed.set()
        c.on_connect = lambda cl, *_a: cl.subscribe(topic, qos=1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 60
        c.connect("127.0.0.1", port, clean_start=False, properties=props)
        c.loop_start()
        assert subscribed.wait(10), "not subscribed"
        return c

    sub = connect()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pubbig-{run}", protocol=mqtt.MQTTv5)
    try:
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        for p in payloads:
            pub.publish(topic, p, qos=1).wait_for_publish(30)
        assert done.wait(30), f"{len(got)} of 3 arrived"
        time.sleep(0.5)  # let the PUBACKs go out
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.disconnect()
        sub.loop_stop()
    assert [type(p).__name__ for p in got] == ["Publish", "Oversize", "Publish"]
    small1, big, small2 = got
    assert (small1.payload, small2.payload) == (b"small-1", b"small-2")  # type: ignore[union-attr]
    assert isinstance(big, Oversize) and big.topic == topic.encode() and big.qos == 1
    assert big.size > 3_000_000 and big.head.endswith(b"B" * 100)

    done.clear()
    got.clear()
    subscribed.clear()
    sub = connect()  # the same persistent session: nothing left to redeliver
    try:
        assert not done.wait(2) and got == []
    finally:
        sub.disconnect()
        sub.loop_stop()
