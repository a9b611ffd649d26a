#!/usr/bin/python3
"""test/e2e/wlapi_client.py: a Workload API client that owes nothing to weft, for issue 7's
scenario 10: Debian's python3-grpcio and python3-protobuf, with stubs generated here and now by
python3-grpc-tools from the public proto (proto/workload.proto, the SPIFFE standard's).

usage: wlapi_client.py SOCKET PROTO EXPECTED_ID

Fetches one X509SVIDResponse from FetchX509SVID on the unix socket SOCKET (with the
workload.spiffe.io header the standard requires) and checks it: one SVID or more, the first
naming EXPECTED_ID, its certificate chain (DER, leaf first) carrying exactly that URI SAN
(read by Debian's openssl), a private key and a bundle. Prints "ok ID SERIAL" and exits 0, or
prints "fail: WHY" and exits 1.
"""
import os
import subprocess
import sys
import tempfile


def fail(why):
    print("fail: " + why, flush=True)
    sys.exit(1)


def first_der(chain):
    """The first certificate of concatenated DER certificates (X.690 §8.1.3 lengths)."""
    if len(chain) < 2 or chain[0] != 0x30:
        fail("x509_svid does not start with a DER SEQUENCE")
    n = chain[1]
    if n < 0x80:
        return chain[: 2 + n]
    k = n & 0x7F
    length = int.from_bytes(chain[2 : 2 + k], "big")
    return chain[: 2 + k + length]


def main():
    if len(sys.argv) != 4:
        fail("usage: wlapi_client.py SOCKET PROTO EXPECTED_ID")
    sock, proto, want = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="weft-wlapi-py-") as gen:
        includes = ["-I", os.path.dirname(os.path.abspath(proto)), "-I", "/usr/include"]
        r = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc"] + includes
            + ["--python_out=" + gen, "--grpc_python_out=" + gen, os.path.basename(proto)],
            capture_output=True, text=True)
        if r.returncode != 0:
            fail("grpc_tools.protoc: " + r.stderr.strip())
        sys.path.insert(0, gen)
        import grpc
        import workload_pb2
        import workload_pb2_grpc

        channel = grpc.insecure_channel("unix:" + sock)
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        try:
            stream = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(),
                                        metadata=[("workload.spiffe.io", "true")], timeout=15)
            resp = next(stream)
            stream.cancel()
        except grpc.RpcError as e:
            fail("FetchX509SVID: %s %s" % (e.code(), e.details()))
        finally:
            channel.close()
    if len(resp.svids) == 0:
        fail("no SVID in the response")
    svid = resp.svids[0]
    if svid.spiffe_id != want:
        fail("spiffe_id %r, not %r" % (svid.spiffe_id, want))
    if len(svid.x509_svid_key) == 0 or len(svid.bundle) == 0:
        fail("no private key or no bundle")
    leaf = first_der(svid.x509_svid)
    r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial", "-ext",
                        "subjectAltName"], input=leaf, capture_output=True)
    text = r.stdout.decode(errors="replace")
    if r.returncode != 0:
        fail("openssl x509: " + r.stderr.decode(errors="replace").strip())
    uris = [w.strip().rstrip(",")[4:] for w in text.split() if w.startswith("URI:")]
    if uris != [want]:
        fail("the certificate's URI SANs are %r, not [%r]" % (uris, want))
    serial = [l.split("=", 1)[1] for l in text.splitlines() if l.startswith("serial=")]
    print("ok %s %s" % (svid.spiffe_id, serial[0] if serial else "?"), flush=True)


if __name__ == "__main__":
    main()
