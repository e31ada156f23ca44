"""Run inside a lab host (by ``test_net_admin_reach``, with the machine's python3): use
the host's NET_ADMIN on every network namespace its own links name by id (a veth's
IFLA_LINK_NETNSID: the lab switch's), through IFLA_TARGET_NETNSID: list that namespace's
links, and create a bridge there. Prints a JSON report: the ids seen and, per id, the
error (an errno name) or the outcome of each request."""

import errno
import json
import socket
import struct

RTM_NEWLINK, RTM_GETLINK = 16, 18
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_CREATE, NLM_F_EXCL = 1, 4, 0x300, 0x400, 0x200
IFLA_IFNAME, IFLA_LINKINFO, IFLA_LINK_NETNSID, IFLA_TARGET_NETNSID = 3, 18, 37, 46
IFLA_INFO_KIND = 1
NLMSG_ERROR, NLMSG_DONE = 2, 3


def attr(kind, data):
    size = 4 + len(data)
    return struct.pack("HH", size, kind) + data + b"\0" * ((4 - size % 4) % 4)


def attrs(buf):
    out = {}
    while len(buf) >= 4:
        size, kind = struct.unpack("HH", buf[:4])
        if size < 4:
            break
        out.setdefault(kind & 0x7FFF, buf[4:size])
        buf = buf[(size + 3) & ~3:]
    return out


def talk(msg_type, flags, payload):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    s.bind((0, 0))
    s.send(struct.pack("IHHII", 16 + len(payload), msg_type, flags, 1, 0) + payload)
    msgs, err = [], 0
    while True:
        data = s.recv(65536)
        done = False
        while len(data) >= 16:
            size, kind, _f, _seq, _pid = struct.unpack("IHHII", data[:16])
            body = data[16:size]
            if kind == NLMSG_ERROR:
                err = -struct.unpack("i", body[:4])[0]
                done = True
            elif kind == NLMSG_DONE:
                err = -struct.unpack("i", body[:4])[0] if len(body) >= 4 else 0
                done = True
            else:
                msgs.append(body)
            data = data[(size + 3) & ~3:]
        if done or not flags & NLM_F_DUMP:
            break
    s.close()
    return err, msgs


ifinfo = struct.pack("BxHiII", 0, 0, 0, 0, 0)
err, links = talk(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, ifinfo)
nsids = set()
for body in links:
    a = attrs(body[16:])
    if IFLA_LINK_NETNSID in a:
        nsids.add(struct.unpack("i", a[IFLA_LINK_NETNSID][:4])[0])
report = {"nsids": sorted(nsids), "read": {}, "create": {}}
for nsid in sorted(nsids):
    target = attr(IFLA_TARGET_NETNSID, struct.pack("i", nsid))
    err, got = talk(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, ifinfo + target)
    report["read"][nsid] = errno.errorcode.get(err, str(err)) if err else len(got)
    new = ifinfo + target + attr(IFLA_IFNAME, b"fgevil%d\0" % nsid) + attr(
        IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"bridge\0"))
    err, _ = talk(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, new)
    report["create"][nsid] = errno.errorcode.get(err, str(err)) if err else "created"
print(json.dumps(report))
