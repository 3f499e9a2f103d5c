/* cmd_cert.h: `gaggle cert revoke NAME|KEY`. */
#ifndef GG_CMD_CERT_H
#define GG_CMD_CERT_H

extern const char cmd_cert_usage[];
int cmd_cert(int argc, char **argv);

#endif
