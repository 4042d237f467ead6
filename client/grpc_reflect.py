#!/usr/bin/env python3
"""grpc_reflect: a small grpcurl-like tool that talks to kvshuttled through server reflection.

Nothing about kvshuttle is compiled in: services, methods and message types all come from the
daemon's reflection service, which is what grpc_cli and grpcurl use too.

  grpc_reflect.py unix:/path/kvshuttle.sock list
  grpc_reflect.py unix:/path/kvshuttle.sock describe kvshuttle.v1.Shuttle
  grpc_reflect.py unix:/path/kvshuttle.sock call kvshuttle.v1.Shuttle/GetInfo '{}'
"""
import argparse
import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="unix:/path/to.sock or host:port")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list services")
    d = sub.add_parser("describe", help="list a service's methods")
    d.add_argument("service")
    c = sub.add_parser("call", help="call a unary method with a JSON request")
    c.add_argument("method", help="package.Service/Method")
    c.add_argument("request", nargs="?", default="{}")
    args = parser.parse_args()

    channel = grpc.insecure_channel(args.target)
    db = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(db)
    if args.command == "list":
        for name in db.get_services():
            print(name)
        return 0
    if args.command == "describe":
        service = pool.FindServiceByName(args.service)
        for m in service.methods:
            stream = "stream " if m.server_streaming else ""
            print(f"rpc {m.name}({m.input_type.full_name}) returns ({stream}{m.output_type.full_name})")
        return 0
    service_name, method_name = args.method.rsplit("/", 1)
    method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(args.request, request_cls())
    call = channel.unary_unary(
        f"/{service_name}/{method_name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_cls.FromString,
    )
    try:
        response = call(request, timeout=30)
    except grpc.RpcError as e:
        print(f"grpc_reflect: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    print(json.dumps(json_format.MessageToDict(response), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
