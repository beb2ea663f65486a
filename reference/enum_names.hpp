// Names of closed sets (attn, rope, score_func, ...), one table per enum,
// declared beside the enum:
//   template <> struct EnumNames<MlaRope> {
//     static constexpr std::array<std::string_view, 3> names = {"decoupled", "none", "full"};
//   };
// names[i] is the name of the enumerator whose value is i, so the enumerators
// must be 0 .. N-1 in table order (the default for an enum class). Parsing,
// printing and "what is allowed" all read the table.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace dslab {

template <class E> struct EnumNames;

template <class E>
concept NamedEnum = std::is_enum_v<E> && requires { EnumNames<E>::names; };

// Every enumerator, in table order.
template <NamedEnum E> constexpr auto enum_values() {
  std::array<E, EnumNames<E>::names.size()> values{};
  for (size_t i = 0; i < values.size(); ++i) values[i] = E(i);
  return values;
}

template <NamedEnum E> constexpr std::string_view name_of(E e) {
  const size_t i = size_t(e);
  return i < EnumNames<E>::names.size() ? EnumNames<E>::names[i] : std::string_view("?");
}

// The enumerator called `name`, or nullopt.
template <NamedEnum E> constexpr std::optional<E> parse_enum(std::string_view name) {
  for (size_t i = 0; i < EnumNames<E>::names.size(); ++i)
    if (EnumNames<E>::names[i] == name) return E(i);
  return std::nullopt;
}

template <NamedEnum E> std::vector<std::string> enum_names() {
  return {EnumNames<E>::names.begin(), EnumNames<E>::names.end()};
}

// The allowed names as text: "softmax, sigmoid"; with quote "\"":
// "\"softmax\", \"sigmoid\"". `skip` leaves one enumerator out.
template <NamedEnum E>
std::string names_text(std::string_view quote = "", std::optional<E> skip = std::nullopt) {
  std::string out;
  for (E e : enum_values<E>()) {
    if (skip && e == *skip) continue;
    if (!out.empty()) out += ", ";
    out.append(quote).append(name_of(e)).append(quote);
  }
  return out;
}

}  // namespace dslab
