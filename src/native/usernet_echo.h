/* The gateway's ICMP echo answered in the TAP reader: see usernet_echo.c. */
#ifndef USERNET_ECHO_H
#define USERNET_ECHO_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

struct echo_target {
  uint8_t mac[6];  /* the gateway's MAC */
  uint32_t ip;     /* its addresses, host order */
  uint32_t dns_ip;
};

void echo_target_set(struct echo_target *t, uint32_t mac_hi, uint32_t mac_lo, uint32_t ip, uint32_t dns_ip);

/*
 * If the frame at p (len bytes, a virtio-net header of vnet_hdr_len bytes first) is an echo
 * request the gateway answers, turns it into the reply in place and returns the reply's length
 * (same header length first); else returns 0 and leaves the frame as it was. max_request and
 * max_reply bound the Ethernet frame lengths (the gateway port's and the TAP port's MTU plus
 * header and one VLAN tag's slack, as the switch judges them).
 */
size_t echo_answer_in_place(const struct echo_target *t, uint8_t *p, size_t len, size_t vnet_hdr_len,
                            size_t max_request, size_t max_reply, uint16_t ip_id);

napi_status usernet_echo_register(napi_env env, napi_value exports);

#endif
