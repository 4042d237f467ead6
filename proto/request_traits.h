// How kvshuttle's gRPC code parses messages: exactly as gRPC does, except that bytes that are
// not a valid message of their type are INVALID_ARGUMENT (gRPC's own protobuf traits answer
// INTERNAL, which the API reserves for CUDA failures). The generated code parses unary messages
// through SerializationTraits<MessageLite>; streaming methods parse through their own request
// type, which gets the same traits below (KVS_STREAM_REQUEST_TRAITS). It is force-included into every C++ file that uses kvs::proto (proto/CMakeLists.txt)
// so all of them agree on it. tests/integration/api_test.cc sends garbage to every method.
#pragma once

#include <grpcpp/impl/codegen/proto_buffer_reader.h>
#include <grpcpp/impl/codegen/proto_buffer_writer.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include "grpc/health/v1/health.pb.h"
#include "kvshuttle/v1/kvshuttle.pb.h"

template <>
class grpc::SerializationTraits<grpc::protobuf::MessageLite, void> {
 public:
  static grpc::Status Serialize(const grpc::protobuf::MessageLite& msg, grpc::ByteBuffer* bb,
                                bool* own_buffer) {
    return grpc::GenericSerialize<grpc::ProtoBufferWriter, grpc::protobuf::MessageLite>(
        msg, bb, own_buffer);
  }
  static grpc::Status Deserialize(grpc::ByteBuffer* buffer, grpc::protobuf::MessageLite* msg) {
    if (buffer == nullptr) return grpc::Status(grpc::StatusCode::INTERNAL, "No payload");
    grpc::Status result;
    {
      grpc::ProtoBufferReader reader(buffer);
      if (!reader.status().ok()) return reader.status();
      if (!msg->ParseFromZeroCopyStream(&reader)) {
        result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "the message bytes are not a valid " + msg->GetTypeName());
      }
    }
    buffer->Clear();
    return result;
  }
};

// The request type of a streaming method parses like every other message.
#define KVS_STREAM_REQUEST_TRAITS(Type)                                                 \
  template <>                                                                           \
  class grpc::SerializationTraits<Type, void>                                           \
      : public grpc::SerializationTraits<grpc::protobuf::MessageLite, void> {};

KVS_STREAM_REQUEST_TRAITS(kvshuttle::v1::AttachRequest)
KVS_STREAM_REQUEST_TRAITS(kvshuttle::v1::ChannelRequest)
KVS_STREAM_REQUEST_TRAITS(grpc::health::v1::HealthCheckRequest)
