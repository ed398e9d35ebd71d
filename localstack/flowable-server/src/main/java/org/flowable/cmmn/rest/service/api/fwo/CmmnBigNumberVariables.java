package org.flowable.cmmn.rest.service.api.fwo;

import java.util.List;

import org.flowable.cmmn.rest.service.api.CmmnRestResponseFactory;
import org.flowable.common.rest.variable.BigDecimalRestVariableConverter;
import org.flowable.common.rest.variable.BigIntegerRestVariableConverter;
import org.flowable.common.rest.variable.RestVariableConverter;
import org.springframework.beans.factory.config.BeanPostProcessor;
import org.springframework.stereotype.Component;

/**
 * Teaches the CMMN REST API the {@code bigDecimal} and {@code bigInteger} variable types.
 *
 * <p>Why: the 7.2.0 flowable-cmmn-rest jar is not in the Maven repository this project builds
 * from, so the server uses 7.1.0, whose response factory lacks these two converters (the 7.2.0
 * process and external-job APIs have them). Without them a case cannot be started with such a
 * variable (400 "unsupported type") and case history cannot show one a worker wrote.
 *
 * <p>Where: this package is below {@code org.flowable.cmmn.rest.service.api}, which the CMMN
 * servlet's own child application context component-scans; a post-processor in the root context
 * would never see the factory bean that lives in that child context. Delete this class once the
 * server can depend on flowable-cmmn-rest 7.2.0.
 */
@Component
public class CmmnBigNumberVariables implements BeanPostProcessor {

    @Override
    public Object postProcessAfterInitialization(Object bean, String beanName) {
        if (bean instanceof CmmnRestResponseFactory factory) {
            List<RestVariableConverter> converters = factory.getVariableConverters();
            if (converters.stream().noneMatch(c -> "bigDecimal".equals(c.getRestTypeName()))) {
                converters.add(new BigDecimalRestVariableConverter());
            }
            if (converters.stream().noneMatch(c -> "bigInteger".equals(c.getRestTypeName()))) {
                converters.add(new BigIntegerRestVariableConverter());
            }
        }
        return bean;
    }
}
