"""Plants a raw value where a tooz-rs driver reads it (corrupt-value tests).

Usage: plant.py redis HOST PORT hset KEY FIELD HEX
       plant.py redis HOST PORT set KEY HEX
       plant.py zookeeper HOSTS PATH HEX
HEX is the value in hexadecimal; ZooKeeper nodes are created (with parents) or overwritten.
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
else:
    sys.exit(f"unknown backend {backend}")
