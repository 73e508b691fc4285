#!/usr/bin/env python3
# Evidence for the Tansu 0.6.0 fetch bug (ARCHITECTURE.md, "Tansu"): sends one raw Kafka Fetch v4
# for TOPIC/PARTITION at OFFSET and prints the record-batch headers the broker returns. A Kafka broker
# returns the batch that contains OFFSET; Tansu 0.6.0 returns nothing when OFFSET is inside a batch
# (or copies of the next batch). Usage: tansu-fetch-probe.py HOST PORT TOPIC PARTITION OFFSET
import socket, struct, sys
host, port, topic, part, off = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def s16(s): b=s.encode(); return struct.pack('>h', len(b)) + b
body = struct.pack('>iiiib', -1, 500, 1, 50<<20, 0) + struct.pack('>i', 1) + s16(topic) + struct.pack('>i', 1) + struct.pack('>iqi', part, off, 1<<20)
req = struct.pack('>hhi', 1, 4, 42) + s16('rawfetch') + body
sk = socket.create_connection((host, port)); sk.sendall(struct.pack('>i', len(req)) + req)
def recvn(n):
    b=b''
    while len(b)<n:
        c=sk.recv(n-len(b)); assert c; b+=c
    return b
n = struct.unpack('>i', recvn(4))[0]; r = recvn(n); p = 4
def rd(fmt):
    global p; v = struct.unpack_from(fmt, r, p); p += struct.calcsize(fmt); return v
rd('>i')  # throttle
(nt,) = rd('>i')
for _ in range(nt):
    (tl,) = rd('>h'); p += tl
    (np_,) = rd('>i')
    for _ in range(np_):
        pid, err, hw, lso = rd('>ihqq'); (na,) = rd('>i'); p += na*16
        (rl,) = rd('>i')
        print(f"partition {pid} error {err} high_watermark {hw} last_stable {lso} records_bytes {rl}")
        end = p + rl
        while p + 61 <= end:
            base, blen, ple, magic, crc, attr, lod, fts, mts, pid2, pep, bseq, cnt = rd('>qiibIhiqqqhii')
            print(f"  batch base_offset {base} batch_length {blen} last_offset_delta {lod} records {cnt} producer_id {pid2} base_sequence {bseq}")
            p = p - 61 + 12 + blen
        p = end
