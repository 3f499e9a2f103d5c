/* cmd_members.h: `gaggle members`. */
#ifndef GG_CMD_MEMBERS_H
#define GG_CMD_MEMBERS_H

extern const char cmd_members_usage[];
int cmd_members(int argc, char **argv);

#endif
