#!/usr/bin/env python3
"""A stock gRPC reflection client (grpcio-reflection, grpc.reflection.v1alpha) for the tests.

Reads a JSON spec on stdin:
  {"ports": [{"addr": "127.0.0.1:50051",
              "calls": [{"method": "pkg.Service/Method", "token": "...", "request": {...}}]}]}
and for each port lists the services reflection advertises and calls each method through
the descriptors fetched by reflection (dynamic messages, requests given as protobuf JSON).
Server-streaming methods are read to their first message. Prints a JSON report:
  [{"addr": ..., "services": [...], "calls": [{"method", "code", "response"|"message"}]}]
Run with the virtualenv scripts/tools makes (.tools/venv/bin/python).
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

TIMEOUT = 20


def call_one(channel, pool, call):
    service_name, method_name = call["method"].split("/")
    method = pool.FindServiceByName(service_name).methods_by_name[method_name]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.ParseDict(call.get("request", {}), request_class())
    metadata = []
    if call.get("token"):
        metadata.append(("authorization", "Bearer " + call["token"]))
    path = "/%s/%s" % (service_name, method_name)
    result = {"method": call["method"]}
    kwargs = dict(
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    try:
        if method.server_streaming:
            responses = channel.unary_stream(path, **kwargs)(
                request, metadata=metadata, timeout=TIMEOUT
            )
            response = next(responses)
            responses.cancel()
        else:
            response = channel.unary_unary(path, **kwargs)(
                request, metadata=metadata, timeout=TIMEOUT
            )
        result["code"] = "OK"
        result["response"] = json_format.MessageToDict(
            response, preserving_proto_field_name=True
        )
    except grpc.RpcError as e:
        result["code"] = e.code().name
        result["message"] = e.details()
    return result


def main():
    spec = json.load(sys.stdin)
    report = []
    for port in spec["ports"]:
        with grpc.insecure_channel(port["addr"]) as channel:
            database = ProtoReflectionDescriptorDatabase(channel)
            services = sorted(database.get_services())
            pool = descriptor_pool.DescriptorPool(database)
            calls = [call_one(channel, pool, c) for c in port.get("calls", [])]
        report.append({"addr": port["addr"], "services": services, "calls": calls})
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
