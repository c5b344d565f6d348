#include "tw/mesh/membership.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

namespace tw::mesh {

namespace {

Status FieldError(const std::string& field, std::string_view what) {
  return InvalidArgumentError(field + ": " + std::string(what));
}

std::string PeerField(size_t i, std::string_view name) {
  return "peers[" + std::to_string(i) + "]." + std::string(name);
}

}  // namespace

StatusOr<Membership> Membership::Create(std::vector<Peer> peers, uint64_t version) {
  if (peers.size() > kMaxPeers) {
    return FieldError("peers", "more than " + std::to_string(kMaxPeers) + " peers");
  }
  for (size_t i = 0; i < peers.size(); ++i) {
    const Peer& p = peers[i];
    if (p.node.empty()) return FieldError(PeerField(i, "node"), "must not be empty");
    if (p.address.empty()) return FieldError(PeerField(i, "address"), "must not be empty");
    if (p.port == 0 || p.port > 65535) {
      return FieldError(PeerField(i, "port"), "must be an integer in 1..65535");
    }
    if (!std::isfinite(p.weight) || p.weight <= 0) {
      return FieldError(PeerField(i, "weight"), "must be a finite number > 0");
    }
  }
  std::vector<size_t> order(peers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return peers[a].node < peers[b].node; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (peers[order[i]].node == peers[order[i - 1]].node) {
      return FieldError(PeerField(order[i], "node"), "duplicate node \"" + peers[order[i]].node +
                                                         "\" (also peers[" +
                                                         std::to_string(order[i - 1]) + "])");
    }
  }
  std::vector<Peer> sorted;
  sorted.reserve(peers.size());
  for (size_t i : order) sorted.push_back(std::move(peers[i]));
  return Membership(std::move(sorted), version);
}

const Peer* Membership::Find(std::string_view node) const {
  auto it = std::lower_bound(peers_.begin(), peers_.end(), node,
                             [](const Peer& p, std::string_view n) { return p.node < n; });
  if (it == peers_.end() || it->node != node) return nullptr;
  return &*it;
}

StatusOr<std::vector<Peer>> ParsePeersJson(std::string_view text) {
  using nlohmann::json;
  json doc = json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return InvalidArgumentError("peers file: not valid JSON");
  if (!doc.is_object()) return FieldError("(top level)", "must be an object {\"peers\":[...]}");
  auto list = doc.find("peers");
  if (list == doc.end()) return FieldError("peers", "missing");
  if (!list->is_array()) return FieldError("peers", "must be an array");
  if (list->size() > kMaxPeers) {
    return FieldError("peers", "more than " + std::to_string(kMaxPeers) + " peers");
  }
  std::vector<Peer> peers;
  peers.reserve(list->size());
  for (size_t i = 0; i < list->size(); ++i) {
    const json& item = (*list)[i];
    if (!item.is_object()) return FieldError("peers[" + std::to_string(i) + "]", "not an object");
    Peer p;
    auto node = item.find("node");
    if (node == item.end()) return FieldError(PeerField(i, "node"), "missing");
    if (!node->is_string()) return FieldError(PeerField(i, "node"), "must be a string");
    p.node = node->get<std::string>();
    auto address = item.find("address");
    if (address == item.end()) return FieldError(PeerField(i, "address"), "missing");
    if (!address->is_string()) return FieldError(PeerField(i, "address"), "must be a string");
    p.address = address->get<std::string>();
    auto port = item.find("port");
    if (port == item.end()) return FieldError(PeerField(i, "port"), "missing");
    if (!port->is_number_integer() || port->get<int64_t>() < 1 || port->get<int64_t>() > 65535) {
      return FieldError(PeerField(i, "port"), "must be an integer in 1..65535");
    }
    p.port = static_cast<uint32_t>(port->get<int64_t>());
    auto weight = item.find("weight");
    if (weight != item.end()) {
      if (!weight->is_number()) return FieldError(PeerField(i, "weight"), "must be a number");
      p.weight = weight->get<double>();
    }
    peers.push_back(std::move(p));
  }
  // The same checks as Create() (empty names, duplicates, weights), with the same field names.
  auto checked = Membership::Create(peers, 0);
  if (!checked.ok()) return checked.status();
  return peers;
}

}  // namespace tw::mesh
