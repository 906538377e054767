"""Plants a raw value where a tooz-rs driver reads it (corrupt-value tests).

Usage: plant.py redis HOST PORT hset KEY FIELD HEX
       plant.py redis HOST PORT set KEY HEX
       plant.py zookeeper HOSTS PATH HEX
       plant.py memcached HOST PORT set|add KEY FLAGS HEX [EXPIRE]
       plant.py memcached HOST PORT get KEY      (prints "FLAGS HEX", or "miss")
HEX is the value in hexadecimal; ZooKeeper nodes are created (with parents) or overwritten.
memcached goes through pymemcache's classic commands, as Python tooz's driver does.
"""
import sys

backend, hosts = sys.argv[1], sys.argv[2]
if backend == "redis":
    import redis

    client = redis.Redis(host=hosts, port=int(sys.argv[3]))
    op, key = sys.argv[4], sys.argv[5]
    if op == "hset":
        client.hset(key, sys.argv[6], bytes.fromhex(sys.argv[7]))
    else:
        client.set(key, bytes.fromhex(sys.argv[6]))
elif backend == "zookeeper":
    from kazoo.client import KazooClient

    client = KazooClient(hosts=hosts)
    client.start()
    path, value = sys.argv[3], bytes.fromhex(sys.argv[4])
    if client.exists(path):
        client.set(path, value)
    else:
        client.create(path, value, makepath=True)
    client.stop()
elif backend == "memcached":
    from pymemcache.client.base import Client

    client = Client(
        (hosts, int(sys.argv[3])),
        deserializer=lambda key, value, flags: (flags, value),
    )
    op, key = sys.argv[4], sys.argv[5]
    if op == "get":
        got = client.get(key)
        print("miss" if got is None else f"{got[0]} {got[1].hex()}")
    else:
        flags, value = int(sys.argv[6]), bytes.fromhex(sys.argv[7])
        expire = int(sys.argv[8]) if len(sys.argv) > 8 else 0
        store = client.add if op == "add" else client.set
        if not store(key, value, expire=expire, flags=flags, noreply=False):
            sys.exit(f"{op} {key}: not stored")
    client.close()
else:
    sys.exit(f"unknown backend {backend}")
