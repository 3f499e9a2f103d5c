/* config.c: agent configuration (being written). */
typedef int gg_config_placeholder_t;
