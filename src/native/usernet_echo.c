/*
 * The gateway's ICMP echo answered inside the TAP reader, without waking JavaScript.
 *
 * Why: a ping to the gateway is the first thing anyone measures, and on an idle daemon its cost
 * is not the work (a flood ping through the JS path takes ~30 us a round trip) but waking the
 * JS engine: after 10 ms of idle on a shared machine its code and heap are cold, and one echo
 * through the reader callback, the switch and the gateway took ~400 us of CPU. slirp4netns, a
 * small C loop, answered in ~130 us. Here the reader answers the echo in place, in the slab it
 * read it into, and writes it back to the same TAP: the work of the JS path (gateway.ts onIpv4
 * -> buildIcmpFrame), with the same reply bytes, the same counters, and the same IP ID sequence.
 *
 * The answer is a pure function over the frame (echo_answer_in_place), so tests compare it
 * with the gateway's own reply byte for byte (test/unit/fast-echo.test.ts). Anything it is
 * not sure of — VLAN tags, IP options, fragments, a bad header checksum, a virtio-net header
 * with offload flags, a frame too big for either port's MTU, a source MAC the switch would
 * drop — it declines, and the frame takes the JS path as before. The reader only asks when JS
 * has armed it (fastEcho) and both ports' state says nothing else must see the frame (no
 * capture, no loss knob): see src/link/port.ts, FAST_PATH_*.
 */
#include <node_api.h>
#include <stdint.h>
#include <string.h>

#include "usernet_echo.h"

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* RFC 1071 one's complement sum, folded and inverted. */
static uint16_t inet_checksum(const uint8_t *p, size_t len) {
  uint64_t sum = 0;
  while (len >= 2) {
    sum += (uint32_t)p[0] << 8 | p[1];
    p += 2;
    len -= 2;
  }
  if (len) sum += (uint32_t)p[0] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

size_t echo_answer_in_place(const struct echo_target *t, uint8_t *p, size_t len, size_t vnet_hdr_len,
                            size_t max_request, size_t max_reply, uint16_t ip_id) {
  const size_t h = vnet_hdr_len;
  if (len < h + 14 + 20 + 8) return 0;
  /* virtio-net header: flags 0 and GSO none, or the frame carries offload work for JS. */
  if (h != 0 && (p[0] != 0 || p[1] != 0)) return 0;
  uint8_t *eth = p + h;
  const size_t flen = len - h;
  if (flen > max_request) return 0;
  if (memcmp(eth, t->mac, 6) != 0) return 0;
  const uint8_t *src_mac = eth + 6;
  /* A group or all-zero source, or one claiming the gateway's MAC: the switch drops those. */
  if (src_mac[0] & 1) return 0;
  static const uint8_t zero[6];
  if (memcmp(src_mac, zero, 6) == 0 || memcmp(src_mac, t->mac, 6) == 0) return 0;
  if (eth[12] != 0x08 || eth[13] != 0x00) return 0;
  uint8_t *ip = eth + 14;
  if (ip[0] != 0x45) return 0; /* IPv4 without options */
  const size_t total = (size_t)ip[2] << 8 | ip[3];
  if (total < 20 + 8 || total > flen - 14) return 0;
  if (14 + total > max_reply) return 0;
  if ((ip[6] & 0x3f) != 0 || ip[7] != 0) return 0; /* MF or a fragment offset */
  if (ip[9] != 1) return 0;                         /* ICMP */
  if (inet_checksum(ip, 20) != 0) return 0;
  const uint32_t dst = be32(ip + 16);
  if (dst != t->ip && dst != t->dns_ip) return 0;
  uint8_t *icmp = ip + 20;
  if (icmp[0] != 8 || icmp[1] != 0) return 0; /* echo request, code 0 */

  /* The reply, as gateway.ts builds it: Ethernet back to the sender from the gateway's MAC; a
   * fresh IPv4 header (TOS 0, the gateway's next ID, DF, TTL 64) from the address pinged; ICMP
   * type 0 with the request's identifier, sequence and data, checksum computed afresh. */
  memcpy(eth, eth + 6, 6);
  memcpy(eth + 6, t->mac, 6);
  uint8_t addr[4];
  memcpy(addr, ip + 12, 4);
  memcpy(ip + 12, ip + 16, 4);
  memcpy(ip + 16, addr, 4);
  ip[1] = 0;
  ip[4] = ip_id >> 8;
  ip[5] = ip_id & 0xff;
  ip[6] = 0x40;
  ip[7] = 0;
  ip[8] = 64;
  ip[10] = ip[11] = 0;
  uint16_t c = inet_checksum(ip, 20);
  ip[10] = c >> 8;
  ip[11] = c & 0xff;
  icmp[0] = 0;
  icmp[2] = icmp[3] = 0;
  c = inet_checksum(icmp, total - 20);
  icmp[2] = c >> 8;
  icmp[3] = c & 0xff;
  if (h != 0) memset(p, 0, h);
  return h + 14 + total;
}

/* ------------------------------------------------------------------------------------------------
 * echoAnswer(frame, off, len, vnetHdrLen, macHi, macLo, ip, dnsIp, maxRequest, maxReply, ipId)
 *   -> reply length or 0. For tests: the same function the reader runs, on a JS buffer.
 * ---------------------------------------------------------------------------------------------- */

bool get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len);

static napi_value echo_answer_js(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  uint8_t *buf;
  size_t buf_len;
  double n[10];
  bool ok = argc == 11 && get_bytes(env, argv[0], &buf, &buf_len);
  for (size_t i = 1; ok && i < 11; i++) ok = napi_get_value_double(env, argv[i], &n[i - 1]) == napi_ok;
  if (!ok || n[0] < 0 || n[1] < 0 || n[0] + n[1] > (double)buf_len) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "echoAnswer(frame, off, len, vnetHdrLen, macHi, macLo, ip, dnsIp, maxRequest, maxReply, ipId)");
    return NULL;
  }
  struct echo_target t;
  echo_target_set(&t, (uint32_t)n[3], (uint32_t)n[4], (uint32_t)n[5], (uint32_t)n[6]);
  size_t r = echo_answer_in_place(&t, buf + (size_t)n[0], (size_t)n[1], (size_t)n[2], (size_t)n[7], (size_t)n[8],
                                  (uint16_t)n[9]);
  napi_create_uint32(env, (uint32_t)r, &result);
  return result;
}

void echo_target_set(struct echo_target *t, uint32_t mac_hi, uint32_t mac_lo, uint32_t ip, uint32_t dns_ip) {
  t->mac[0] = (mac_hi >> 8) & 0xff;
  t->mac[1] = mac_hi & 0xff;
  t->mac[2] = mac_lo >> 24;
  t->mac[3] = (mac_lo >> 16) & 0xff;
  t->mac[4] = (mac_lo >> 8) & 0xff;
  t->mac[5] = mac_lo & 0xff;
  t->ip = ip;
  t->dns_ip = dns_ip;
}

napi_status usernet_echo_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"echoAnswer", NULL, echo_answer_js, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, 1, props);
}
