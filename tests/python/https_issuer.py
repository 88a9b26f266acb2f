"""A small authorization server over HTTPS (a private CA's certificate), for
tests/oauth_tls.rs: GET serves a JWKS file, POST /introspect answers RFC 7662.

    python3 https_issuer.py CERT KEY JWKS_FILE RESOURCE

Prints the port it listens on, then serves until killed.
"""
import http.server
import json
import ssl
import sys
import time

cert, key, jwks_file, resource = sys.argv[1:5]


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, body):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with open(jwks_file, "rb") as f:
            self.answer(f.read())

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = self.rfile.read(length).decode()
        if form.startswith("token=opaque-over-tls&"):
            self.answer({"active": True, "sub": "tls-svc", "aud": resource,
                         "exp": int(time.time()) + 600})
        else:
            self.answer({"active": False})

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
